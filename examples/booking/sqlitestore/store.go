package sqlitestore

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/tiercache/tiercache/examples/booking"
)

//go:embed schema.sql
var schema string

// Store is a booking.Repository on an SQLite database file. It is safe for
// concurrent use.
type Store struct {
	w *sql.DB // one connection: every write
	r *sql.DB // reads
}

var (
	_ booking.Repository = (*Store)(nil)
	_ booking.Seeder     = (*Store)(nil)
)

// Open opens (creating it if needed) the database file at path and applies
// the schema.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlitestore: invalid path %q", path)
	}
	dsn := func(txlock string) string {
		q := url.Values{}
		q.Set("_busy_timeout", "5000")
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "NORMAL")
		q.Set("_foreign_keys", "1")
		q.Set("_txlock", txlock)
		return "file:" + path + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn("immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w}
	// The schema goes first, through the writer, so that the readers open
	// a database that is already in WAL mode.
	if _, err := w.ExecContext(ctx, schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: apply schema: %w", err)
	}
	s.r, err = sql.Open("sqlite", dsn("deferred"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// DB returns the pool of read connections, for queries of your own.
func (s *Store) DB() *sql.DB { return s.r }

func unix(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

type scanner interface{ Scan(dest ...any) error }

const profileCols = `id, email, name, bio, updated_at`

func scanProfile(row scanner) (booking.Profile, error) {
	var p booking.Profile
	var at int64
	err := row.Scan(&p.ID, &p.Email, &p.Name, &p.Bio, &at)
	p.UpdatedAt = unix(at)
	return p, err
}

const expertCols = `id, profile_id, specialty, rate_cents, created_at`

func scanExpert(row scanner) (booking.Expert, error) {
	var e booking.Expert
	var at int64
	err := row.Scan(&e.ID, &e.ProfileID, &e.Specialty, &e.RateCents, &at)
	e.CreatedAt = unix(at)
	return e, err
}

const appointmentCols = `id, expert_id, guest_id, starts_at, status, created_at`

func scanAppointment(row scanner) (booking.Appointment, error) {
	var a booking.Appointment
	var starts, at int64
	var status string
	err := row.Scan(&a.ID, &a.ExpertID, &a.GuestID, &starts, &status, &at)
	a.StartsAt, a.Status, a.CreatedAt = unix(starts), booking.Status(status), unix(at)
	return a, err
}

// GetProfile implements booking.Repository.
func (s *Store) GetProfile(ctx context.Context, id int64) (booking.Profile, error) {
	p, err := scanProfile(s.r.QueryRowContext(ctx, `SELECT `+profileCols+` FROM profiles WHERE id = ?`, id))
	if err != nil {
		return booking.Profile{}, err
	}
	return p, nil
}

// GetExpert implements booking.Repository.
func (s *Store) GetExpert(ctx context.Context, id int64) (booking.Expert, error) {
	e, err := scanExpert(s.r.QueryRowContext(ctx, `SELECT `+expertCols+` FROM experts WHERE id = ?`, id))
	if err != nil {
		return booking.Expert{}, err
	}
	return e, nil
}

// ListExpertsBySpecialty implements booking.Repository.
func (s *Store) ListExpertsBySpecialty(ctx context.Context, specialty string) ([]booking.Expert, error) {
	return list(ctx, s.r, scanExpert, `SELECT `+expertCols+` FROM experts WHERE specialty = ? ORDER BY id`, specialty)
}

// GetAppointment implements booking.Repository.
func (s *Store) GetAppointment(ctx context.Context, id int64) (booking.Appointment, error) {
	a, err := scanAppointment(s.r.QueryRowContext(ctx, `SELECT `+appointmentCols+` FROM appointments WHERE id = ?`, id))
	if err != nil {
		return booking.Appointment{}, err
	}
	return a, nil
}

// ListExpertDay implements booking.Repository.
func (s *Store) ListExpertDay(ctx context.Context, expertID int64, day time.Time) ([]booking.Appointment, error) {
	from := booking.Day(day)
	return list(ctx, s.r, scanAppointment, `SELECT `+appointmentCols+` FROM appointments
		WHERE expert_id = ? AND starts_at >= ? AND starts_at < ? AND status = 'booked'
		ORDER BY starts_at`, expertID, from.Unix(), from.AddDate(0, 0, 1).Unix())
}

// ListUpcoming implements booking.Repository.
func (s *Store) ListUpcoming(ctx context.Context, guestID int64, from time.Time, limit int) ([]booking.Appointment, error) {
	// Round from up to the second: starts_at has a precision of a second.
	sec := from.Unix()
	if from.After(unix(sec)) {
		sec++
	}
	return list(ctx, s.r, scanAppointment, `SELECT `+appointmentCols+` FROM appointments
		WHERE guest_id = ? AND starts_at >= ? AND status = 'booked'
		ORDER BY starts_at, id LIMIT ?`, guestID, sec, limit)
}

func list[T any](ctx context.Context, db *sql.DB, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateProfile implements booking.Repository.
func (s *Store) UpdateProfile(ctx context.Context, u booking.ProfileUpdate) (booking.Profile, error) {
	p, err := scanProfile(s.w.QueryRowContext(ctx, `UPDATE profiles SET name = ?, bio = ?, updated_at = ?
		WHERE id = ? RETURNING `+profileCols, u.Name, u.Bio, time.Now().Unix(), u.ID))
	if err != nil {
		return booking.Profile{}, err
	}
	return p, nil
}

// BookAppointment implements booking.Repository.
func (s *Store) BookAppointment(ctx context.Context, b booking.Booking) (a booking.Appointment, err error) {
	if !booking.ValidSlot(b.StartsAt) {
		return booking.Appointment{}, fmt.Errorf("sqlitestore: book %v: %w", b.StartsAt, booking.ErrInvalidSlot)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		a, err = scanAppointment(tx.QueryRowContext(ctx, `INSERT INTO appointments (expert_id, guest_id, starts_at, status, created_at)
			VALUES (?, ?, ?, 'booked', ?)
			ON CONFLICT (expert_id, starts_at) WHERE status = 'booked' DO NOTHING
			RETURNING `+appointmentCols, b.ExpertID, b.GuestID, b.StartsAt.Unix(), time.Now().Unix()))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlitestore: book expert %d at %v: %w", b.ExpertID, b.StartsAt.UTC(), booking.ErrSlotTaken)
		}
		return err
	})
	if err != nil {
		return booking.Appointment{}, err
	}
	return a, nil
}

// CancelAppointment implements booking.Repository.
func (s *Store) CancelAppointment(ctx context.Context, id int64) (a booking.Appointment, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		a, err = scanAppointment(tx.QueryRowContext(ctx, `UPDATE appointments SET status = 'cancelled'
			WHERE id = ? AND status = 'booked' RETURNING `+appointmentCols, id))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Nothing was booked: say whether the appointment exists at all.
		if _, err := scanAppointment(tx.QueryRowContext(ctx, `SELECT `+appointmentCols+` FROM appointments WHERE id = ?`, id)); err != nil {
			return err
		}
		return fmt.Errorf("sqlitestore: cancel appointment %d: %w", id, booking.ErrNotBooked)
	})
	if err != nil {
		return booking.Appointment{}, err
	}
	return a, nil
}

// inTx runs f in a transaction on the writer and commits it if f returns
// nil.
func (s *Store) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitestore: begin: %w", err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback() // the error that matters is f's
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: commit: %w", err)
	}
	return nil
}
