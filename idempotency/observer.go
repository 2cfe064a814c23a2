package idempotency

import (
	"context"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds.
const (
	// EventAcquired: Begin found no record, or a failed attempt, and
	// started an attempt (Fence is its fence).
	EventAcquired EventKind = iota + 1
	// EventTakenOver: Begin found an attempt whose lease had expired and
	// started a new one with a larger fence.
	EventTakenOver
	// EventInFlight: Begin found a live attempt (the middleware answers 409).
	EventInFlight
	// EventReplayed: Begin found a completed record (Tier says whether the
	// copy came from L1 or Redis).
	EventReplayed
	// EventMismatch: the key was first used with another request (422).
	EventMismatch
	// EventCompleted: an attempt recorded its result.
	EventCompleted
	// EventFailed: an attempt ended without a result to replay (a handler
	// error, panic or a response not to replay); a retry runs again at once.
	EventFailed
	// EventLeaseLost: an attempt found a newer attempt in its place.
	EventLeaseLost
	// EventUnavailable: a call failed because Redis was unreachable or the
	// breaker refused it; the request failed closed (503).
	EventUnavailable
	// EventFailOpen: Redis was unavailable and the route ran its handler
	// without protection, because it opted out of failing closed.
	EventFailOpen
	// EventCompleteDeferred: a completion could not reach Redis and is
	// retried in the background.
	EventCompleteDeferred
	// EventCompleteDropped: a deferred completion was given up (the queue
	// was full, the deadline passed, or the store closed).
	EventCompleteDropped
	// EventRecreated: a completion or a heartbeat found its record gone
	// (Redis restarted empty, or the key was deleted) and wrote it again.
	EventRecreated
	// EventCorrupt: a record did not have the shape this package writes.
	EventCorrupt
)

// String returns the kind's name in snake case.
func (k EventKind) String() string {
	switch k {
	case EventAcquired:
		return "acquired"
	case EventTakenOver:
		return "taken_over"
	case EventInFlight:
		return "in_flight"
	case EventReplayed:
		return "replayed"
	case EventMismatch:
		return "mismatch"
	case EventCompleted:
		return "completed"
	case EventFailed:
		return "failed"
	case EventLeaseLost:
		return "lease_lost"
	case EventUnavailable:
		return "unavailable"
	case EventFailOpen:
		return "fail_open"
	case EventCompleteDeferred:
		return "complete_deferred"
	case EventCompleteDropped:
		return "complete_dropped"
	case EventRecreated:
		return "recreated"
	case EventCorrupt:
		return "corrupt"
	}
	return "unknown"
}

// Event is something a [Store] did, given to [Observer.Event].
type Event struct {
	// Store is Options.Name.
	Store string
	Kind  EventKind
	// Record names the record: 16 hex digits of the hash of its scope and
	// key. The raw key never reaches an observer.
	Record string
	// Fence is the attempt's fence, when there is one.
	Fence int64
	// FromL1 is true for a replay answered from this instance's copy.
	FromL1 bool
	// Err is the cause, for EventUnavailable, EventFailOpen,
	// EventCompleteDropped, EventLeaseLost and EventCorrupt.
	Err error
	// Duration is how long the Redis call took, when one was made.
	Duration time.Duration
}

// Observer receives what a [Store] does. Implementations must be safe for
// concurrent use, must be fast and must not call back into the Store. The
// otel package implements it (tierotel.NewIdempotencyObserver).
type Observer interface {
	// Event reports e; ctx is the request's context (without a request,
	// for background work, context.Background()).
	Event(ctx context.Context, e Event)
}

// NoopObserver is an [Observer] that does nothing.
type NoopObserver struct{}

// Event does nothing.
func (NoopObserver) Event(context.Context, Event) {}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(ctx context.Context, e Event)

// Event calls f(ctx, e).
func (f ObserverFunc) Event(ctx context.Context, e Event) { f(ctx, e) }

// Breaker is a circuit breaker guarding the Redis calls of a [Store] or of
// the onetime package. Implementations must be safe for concurrent use.
//
// A Breaker may also have a method Unused() (NewBreaker's has): a call
// Allow let go that ended on its caller's context, saying nothing about
// Redis, is reported there, so that a half-open breaker whose probe it was
// lets the next call probe at once.
type Breaker interface {
	// Allow reports whether a call may go ahead now. A refused call fails
	// with ErrUnavailable without reaching Redis.
	Allow() bool
	// Success records a call that reached Redis and got an answer.
	Success()
	// Failure records a call that could not reach Redis or timed out.
	Failure()
}
