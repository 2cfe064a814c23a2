package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tiercache/tiercache/examples/booking"
)

// Seed inserts d into empty tables, in one transaction, with COPY, then
// moves the id sequences past the ids it inserted.
func (s *Store) Seed(ctx context.Context, d *booking.SeedData) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM appointments)`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("the database already holds data")
		}
		copies := []struct {
			table string
			cols  []string
			rows  pgx.CopyFromSource
		}{
			{"profiles", []string{"id", "email", "name", "bio", "updated_at"},
				pgx.CopyFromSlice(len(d.Profiles), func(i int) ([]any, error) {
					p := d.Profiles[i]
					return []any{p.ID, p.Email, p.Name, p.Bio, p.UpdatedAt}, nil
				})},
			{"experts", []string{"id", "profile_id", "specialty", "rate_cents", "created_at"},
				pgx.CopyFromSlice(len(d.Experts), func(i int) ([]any, error) {
					e := d.Experts[i]
					return []any{e.ID, e.ProfileID, e.Specialty, e.RateCents, e.CreatedAt}, nil
				})},
			{"appointments", []string{"id", "expert_id", "guest_id", "starts_at", "status", "created_at"},
				pgx.CopyFromSlice(len(d.Appointments), func(i int) ([]any, error) {
					a := d.Appointments[i]
					return []any{a.ID, a.ExpertID, a.GuestID, a.StartsAt, string(a.Status), a.CreatedAt}, nil
				})},
		}
		for _, c := range copies {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, c.rows); err != nil {
				return fmt.Errorf("copy %s: %w", c.table, err)
			}
			if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), max(id)) FROM `+pgx.Identifier{c.table}.Sanitize(), c.table); err != nil {
				return fmt.Errorf("set %s sequence: %w", c.table, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: seed: %w", err)
	}
	return nil
}
