package booking

import (
	"context"
	"sync/atomic"
	"time"
)

// Counted is a [Repository] that counts the calls that reach the one it
// wraps: put it between a [CachedRepository] and the database to count the
// queries that the cache did not answer. It is safe for concurrent use.
type Counted struct {
	repo          Repository
	reads, writes atomic.Uint64
}

var _ Repository = (*Counted)(nil)

// Count returns repo counted.
func Count(repo Repository) *Counted { return &Counted{repo: repo} }

// Reads returns how many reads reached the wrapped repository.
func (c *Counted) Reads() uint64 { return c.reads.Load() }

// Writes returns how many writes reached the wrapped repository.
func (c *Counted) Writes() uint64 { return c.writes.Load() }

// GetProfile implements [Repository].
func (c *Counted) GetProfile(ctx context.Context, id int64) (Profile, error) {
	c.reads.Add(1)
	return c.repo.GetProfile(ctx, id)
}

// GetExpert implements [Repository].
func (c *Counted) GetExpert(ctx context.Context, id int64) (Expert, error) {
	c.reads.Add(1)
	return c.repo.GetExpert(ctx, id)
}

// ListExpertsBySpecialty implements [Repository].
func (c *Counted) ListExpertsBySpecialty(ctx context.Context, specialty string) ([]Expert, error) {
	c.reads.Add(1)
	return c.repo.ListExpertsBySpecialty(ctx, specialty)
}

// GetAppointment implements [Repository].
func (c *Counted) GetAppointment(ctx context.Context, id int64) (Appointment, error) {
	c.reads.Add(1)
	return c.repo.GetAppointment(ctx, id)
}

// ListExpertDay implements [Repository].
func (c *Counted) ListExpertDay(ctx context.Context, expertID int64, day time.Time) ([]Appointment, error) {
	c.reads.Add(1)
	return c.repo.ListExpertDay(ctx, expertID, day)
}

// ListUpcoming implements [Repository].
func (c *Counted) ListUpcoming(ctx context.Context, guestID int64, from time.Time, limit int) ([]Appointment, error) {
	c.reads.Add(1)
	return c.repo.ListUpcoming(ctx, guestID, from, limit)
}

// UpdateProfile implements [Repository].
func (c *Counted) UpdateProfile(ctx context.Context, u ProfileUpdate) (Profile, error) {
	c.writes.Add(1)
	return c.repo.UpdateProfile(ctx, u)
}

// BookAppointment implements [Repository].
func (c *Counted) BookAppointment(ctx context.Context, b Booking) (Appointment, error) {
	c.writes.Add(1)
	return c.repo.BookAppointment(ctx, b)
}

// CancelAppointment implements [Repository].
func (c *Counted) CancelAppointment(ctx context.Context, id int64) (Appointment, error) {
	c.writes.Add(1)
	return c.repo.CancelAppointment(ctx, id)
}
