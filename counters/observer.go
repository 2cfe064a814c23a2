package counters

import (
	"context"
	"time"

	"github.com/tiercache/tiercache/internal/breaker"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds.
const (
	// EventFlushed: a batch of a counter's increments was written; Items
	// counts its cells (counter buckets and unique members).
	EventFlushed EventKind = iota + 1
	// EventReplayed: a batch whose earlier write had an unknown outcome was
	// retried and found applied already (the instance's marker had it): it
	// was not applied twice. Items counts its cells.
	EventReplayed
	// EventUnavailable: a flush or a query could not reach Redis, timed
	// out, was refused by an open breaker, or was not acknowledged by
	// Options.WaitReplicas replicas (Err says which). A flush's batch stays
	// and is retried.
	EventUnavailable
	// EventRefused: an increment was refused because Options.MaxPending
	// cells were already waiting (ErrFull).
	EventRefused
	// EventRenumbered: a batch's number was below the instance's marker
	// (a process restarted under the same Instance name with its clock
	// behind the earlier one's, or two processes sharing the name): it was
	// renumbered above the marker and applied, not skipped. Items counts
	// its cells.
	EventRenumbered
)

// String returns the kind's name in snake case.
func (k EventKind) String() string {
	switch k {
	case EventFlushed:
		return "flushed"
	case EventReplayed:
		return "replayed"
	case EventUnavailable:
		return "unavailable"
	case EventRefused:
		return "refused"
	case EventRenumbered:
		return "renumbered"
	}
	return "unknown"
}

// Event is something [Counters] did, given to [Observer.Event].
type Event struct {
	// Name is Options.Name.
	Name string
	Kind EventKind
	// Counter is the counter's or unique count's name (an application
	// constant such as "bookings"); empty for a query's failure.
	Counter string
	// Items is the number of cells concerned.
	Items int
	// Duration is how long the Redis call took (flushes and their
	// failures).
	Duration time.Duration
	// Err is the cause of EventUnavailable and EventRefused.
	Err error
}

// Observer receives what [Counters] do. Implementations must be safe for
// concurrent use, fast, and must not call back. The otel package
// implements it (tierotel.NewCountersObserver).
type Observer interface {
	Event(ctx context.Context, e Event)
}

// NoopObserver is an [Observer] that does nothing.
type NoopObserver struct{}

// Event does nothing.
func (NoopObserver) Event(context.Context, Event) {}

// Breaker is a circuit breaker guarding Redis calls (the contract of
// onetime.Breaker). Implementations must be safe for concurrent use.
//
// A Breaker may also have a method Unused() (NewBreaker's has): a call
// Allow let go that ended on its caller's context, saying nothing about
// Redis, is reported there, so that a half-open breaker whose probe it was
// lets the next call probe at once.
type Breaker interface {
	// Allow reports whether a call may go ahead now.
	Allow() bool
	// Success records a call that reached Redis.
	Success()
	// Failure records a call that could not reach Redis or timed out.
	Failure()
}

// Defaults of the built-in circuit breaker (see Options.Breaker).
const (
	DefaultBreakerFailures = breaker.DefaultFailures
	DefaultBreakerCooldown = breaker.DefaultCooldown
)

var _ Breaker = (*breaker.Breaker)(nil)

// NewBreaker returns the breaker the package uses by default, the one the
// cache and the other primitives share: it opens after failures
// consecutive failures, refuses calls for cooldown, then lets one probe
// through, whose outcome closes or reopens it. Closed costs one atomic
// load.
func NewBreaker(failures int, cooldown time.Duration) Breaker {
	return breaker.New(breaker.Options{Failures: failures, Cooldown: cooldown})
}
