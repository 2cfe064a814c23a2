package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/tiercache/tiercache/examples/booking"
)

// seedBatch is the number of rows per INSERT: 200 rows of at most 6 columns
// stay well under SQLite's limit of 32766 parameters per statement.
const seedBatch = 200

// Seed inserts d into empty tables, in one transaction, in multi-row
// INSERTs of a prepared statement per batch size.
func (s *Store) Seed(ctx context.Context, d *booking.SeedData) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM appointments)`).Scan(&n); err != nil {
			return fmt.Errorf("sqlitestore: seed: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("sqlitestore: seed: the database already holds data")
		}
		err := insertRows(ctx, tx, "profiles", profileCols, d.Profiles, func(p booking.Profile) []any {
			return []any{p.ID, p.Email, p.Name, p.Bio, p.UpdatedAt.Unix()}
		})
		if err == nil {
			err = insertRows(ctx, tx, "experts", expertCols, d.Experts, func(e booking.Expert) []any {
				return []any{e.ID, e.ProfileID, e.Specialty, e.RateCents, e.CreatedAt.Unix()}
			})
		}
		if err == nil {
			err = insertRows(ctx, tx, "appointments", appointmentCols, d.Appointments, func(a booking.Appointment) []any {
				return []any{a.ID, a.ExpertID, a.GuestID, a.StartsAt.Unix(), string(a.Status), a.CreatedAt.Unix()}
			})
		}
		if err != nil {
			return fmt.Errorf("sqlitestore: seed: %w", err)
		}
		return nil
	})
}

func insertRows[T any](ctx context.Context, tx *sql.Tx, table, cols string, rows []T, values func(T) []any) error {
	ncols := strings.Count(cols, ",") + 1
	tuple := "(" + strings.Repeat("?, ", ncols-1) + "?)"
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	args := make([]any, 0, seedBatch*ncols)
	for i := 0; i < len(rows); i += seedBatch {
		batch := rows[i:min(i+seedBatch, len(rows))]
		st := stmts[len(batch)]
		if st == nil {
			q := "INSERT INTO " + table + " (" + cols + ") VALUES " + strings.Repeat(tuple+", ", len(batch)-1) + tuple
			var err error
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return fmt.Errorf("prepare %s: %w", table, err)
			}
			stmts[len(batch)] = st
		}
		args = args[:0]
		for _, r := range batch {
			args = append(args, values(r)...)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert %s: %w", table, err)
		}
	}
	return nil
}
