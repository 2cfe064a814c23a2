package pgstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tiercache/tiercache/examples/booking"
)

//go:embed schema.sql
var schema string

// schemaLock is the key of the advisory lock held while the schema is
// applied.
const schemaLock = 0x7469657263616368 // "tiercach"

// Options configures [Open] and [New]. A nil *Options means the defaults.
type Options struct {
	// Schema is the PostgreSQL schema the tables live in; it is created if
	// missing, and Open puts it first on the search_path of every
	// connection. New, whose pool is the caller's, only creates the tables
	// in it: the pool's search_path must name it. Default: none, the
	// tables go where the connection's search_path says (usually public).
	Schema string
}

// Store is a booking.Repository on PostgreSQL. It is safe for concurrent
// use.
type Store struct {
	pool *pgxpool.Pool
	own  bool // Close closes pool
}

var (
	_ booking.Repository = (*Store)(nil)
	_ booking.Seeder     = (*Store)(nil)
)

// Open connects to the database at databaseURL (a PostgreSQL URL or DSN, as
// pgxpool.ParseConfig takes it) and applies the schema. Close closes the
// pool.
func Open(ctx context.Context, databaseURL string, o *Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if o != nil && o.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{o.Schema}.Sanitize()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	s, err := New(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.own = true
	return s, nil
}

// New returns a Store over pool, which stays the caller's, and applies the
// schema.
func New(ctx context.Context, pool *pgxpool.Pool, o *Options) (*Store, error) {
	var opts Options
	if o != nil {
		opts = *o
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
			return err
		}
		if opts.Schema != "" {
			id := pgx.Identifier{opts.Schema}.Sanitize()
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+id); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: apply schema: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool if Open created it.
func (s *Store) Close() error {
	if s.own {
		s.pool.Close()
	}
	return nil
}

// Pool returns the pool, for queries of your own.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

const profileCols = `id, email, name, bio, updated_at`

func scanProfile(row pgx.Row) (booking.Profile, error) {
	var p booking.Profile
	if err := row.Scan(&p.ID, &p.Email, &p.Name, &p.Bio, &p.UpdatedAt); err != nil {
		return booking.Profile{}, err
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

const expertCols = `id, profile_id, specialty, rate_cents, created_at`

func scanExpert(row pgx.Row) (booking.Expert, error) {
	var e booking.Expert
	if err := row.Scan(&e.ID, &e.ProfileID, &e.Specialty, &e.RateCents, &e.CreatedAt); err != nil {
		return booking.Expert{}, err
	}
	e.CreatedAt = e.CreatedAt.UTC()
	return e, nil
}

const appointmentCols = `id, expert_id, guest_id, starts_at, status, created_at`

func scanAppointment(row pgx.Row) (booking.Appointment, error) {
	var a booking.Appointment
	var status string
	if err := row.Scan(&a.ID, &a.ExpertID, &a.GuestID, &a.StartsAt, &status, &a.CreatedAt); err != nil {
		return booking.Appointment{}, err
	}
	a.Status, a.StartsAt, a.CreatedAt = booking.Status(status), a.StartsAt.UTC(), a.CreatedAt.UTC()
	return a, nil
}

// GetProfile implements booking.Repository.
func (s *Store) GetProfile(ctx context.Context, id int64) (booking.Profile, error) {
	return scanProfile(s.pool.QueryRow(ctx, `SELECT `+profileCols+` FROM profiles WHERE id = $1`, id))
}

// GetExpert implements booking.Repository.
func (s *Store) GetExpert(ctx context.Context, id int64) (booking.Expert, error) {
	return scanExpert(s.pool.QueryRow(ctx, `SELECT `+expertCols+` FROM experts WHERE id = $1`, id))
}

// ListExpertsBySpecialty implements booking.Repository.
func (s *Store) ListExpertsBySpecialty(ctx context.Context, specialty string) ([]booking.Expert, error) {
	return list(ctx, s.pool, scanExpert, `SELECT `+expertCols+` FROM experts WHERE specialty = $1 ORDER BY id`, specialty)
}

// GetAppointment implements booking.Repository.
func (s *Store) GetAppointment(ctx context.Context, id int64) (booking.Appointment, error) {
	return scanAppointment(s.pool.QueryRow(ctx, `SELECT `+appointmentCols+` FROM appointments WHERE id = $1`, id))
}

// ListExpertDay implements booking.Repository.
func (s *Store) ListExpertDay(ctx context.Context, expertID int64, day time.Time) ([]booking.Appointment, error) {
	from := booking.Day(day)
	return list(ctx, s.pool, scanAppointment, `SELECT `+appointmentCols+` FROM appointments
		WHERE expert_id = $1 AND starts_at >= $2 AND starts_at < $3 AND status = 'booked'
		ORDER BY starts_at`, expertID, from, from.AddDate(0, 0, 1))
}

// ListUpcoming implements booking.Repository.
func (s *Store) ListUpcoming(ctx context.Context, guestID int64, from time.Time, limit int) ([]booking.Appointment, error) {
	return list(ctx, s.pool, scanAppointment, `SELECT `+appointmentCols+` FROM appointments
		WHERE guest_id = $1 AND starts_at >= $2 AND status = 'booked'
		ORDER BY starts_at, id LIMIT $3`, guestID, from, limit)
}

func list[T any](ctx context.Context, pool *pgxpool.Pool, scan func(pgx.Row) (T, error), query string, args ...any) ([]T, error) {
	rows, err := pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []T{}
	}
	return out, nil
}

// UpdateProfile implements booking.Repository.
func (s *Store) UpdateProfile(ctx context.Context, u booking.ProfileUpdate) (booking.Profile, error) {
	return scanProfile(s.pool.QueryRow(ctx, `UPDATE profiles SET name = $1, bio = $2, updated_at = date_trunc('second', now())
		WHERE id = $3 RETURNING `+profileCols, u.Name, u.Bio, u.ID))
}

// BookAppointment implements booking.Repository.
func (s *Store) BookAppointment(ctx context.Context, b booking.Booking) (a booking.Appointment, err error) {
	if !booking.ValidSlot(b.StartsAt) {
		return booking.Appointment{}, fmt.Errorf("pgstore: book %v: %w", b.StartsAt, booking.ErrInvalidSlot)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err = scanAppointment(tx.QueryRow(ctx, `INSERT INTO appointments (expert_id, guest_id, starts_at, status)
			VALUES ($1, $2, $3, 'booked')
			ON CONFLICT (expert_id, starts_at) WHERE status = 'booked' DO NOTHING
			RETURNING `+appointmentCols, b.ExpertID, b.GuestID, b.StartsAt.UTC()))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: book expert %d at %v: %w", b.ExpertID, b.StartsAt.UTC(), booking.ErrSlotTaken)
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
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err = scanAppointment(tx.QueryRow(ctx, `UPDATE appointments SET status = 'cancelled'
			WHERE id = $1 AND status = 'booked' RETURNING `+appointmentCols, id))
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Nothing was booked: say whether the appointment exists at all.
		if _, err := scanAppointment(tx.QueryRow(ctx, `SELECT `+appointmentCols+` FROM appointments WHERE id = $1`, id)); err != nil {
			return err
		}
		return fmt.Errorf("pgstore: cancel appointment %d: %w", id, booking.ErrNotBooked)
	})
	if err != nil {
		return booking.Appointment{}, err
	}
	return a, nil
}
