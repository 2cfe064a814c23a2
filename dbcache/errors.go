package dbcache

import (
	"errors"

	"github.com/tiercache/tiercache/tier"
)

var (
	// ErrSlotTaken is returned by [Repository.BookAppointment] when the
	// expert already has a booked appointment starting at that time.
	ErrSlotTaken = errors.New("dbcache: slot already taken")
	// ErrInvalidSlot is returned by [Repository.BookAppointment] for a start
	// time that is not on the slot grid (see [SlotLength]).
	ErrInvalidSlot = errors.New("dbcache: not a valid slot")
	// ErrNotBooked is returned by [Repository.CancelAppointment] for an
	// appointment that exists but is not booked (already cancelled).
	ErrNotBooked = errors.New("dbcache: appointment is not booked")
	// ErrInvalidate is matched by the error of a write that succeeded but
	// whose cache invalidation failed (see [Invalidate]). The write's
	// result is valid; the error also matches the cache's own error, for
	// example tier.ErrL2.
	ErrInvalidate = errors.New("dbcache: cache invalidation failed")
)

// notFound marks a query's "no rows" error as a tier "not found" (so the
// cache stores a negative entry) while keeping the query's own error, which
// the wrapper hands back to the callers of the load that produced it.
type notFound struct{ err error }

func (e *notFound) Error() string { return e.err.Error() }

func (e *notFound) Unwrap() []error { return []error{tier.ErrNotFound, e.err} }
