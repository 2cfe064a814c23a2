package notify

import "context"

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds.
const (
	// EventEnqueued: a notification was written to its user's stream.
	EventEnqueued EventKind = iota + 1
	// EventDuplicate: an enqueue found its dedup key and queued nothing.
	EventDuplicate
	// EventBuffered: Redis was unreachable; the notification waits in the
	// local buffer.
	EventBuffered
	// EventRefused: Redis was unreachable and the buffer full
	// (ErrBufferFull).
	EventRefused
	// EventFlushed: a buffered notification reached Redis.
	EventFlushed
	// EventSent: a digest was accepted by the sender and acknowledged;
	// Items is its size.
	EventSent
	// EventSendFailed: the sender failed; the digest stays queued.
	EventSendFailed
	// EventClaimed: a consumer took over entries left pending by another
	// consumer (crashed, or whose lock expired); Items counts them.
	EventClaimed
	// EventRelayed: outbox rows were written to the streams; Items counts
	// them.
	EventRelayed
	// EventUnavailable: a Redis call failed (Err says why).
	EventUnavailable
	// EventHeld: a ready digest was held by the user's quiet hours, or for
	// RetryDelay because the user's preferences could not be read (Err);
	// Items is its size.
	EventHeld
)

// String returns the kind's name in snake case.
func (k EventKind) String() string {
	switch k {
	case EventEnqueued:
		return "enqueued"
	case EventDuplicate:
		return "duplicate"
	case EventBuffered:
		return "buffered"
	case EventRefused:
		return "refused"
	case EventFlushed:
		return "flushed"
	case EventSent:
		return "sent"
	case EventSendFailed:
		return "send_failed"
	case EventClaimed:
		return "claimed"
	case EventRelayed:
		return "relayed"
	case EventUnavailable:
		return "unavailable"
	case EventHeld:
		return "held"
	}
	return "unknown"
}

// Event is something the package did, given to [Observer.Event]. It holds
// no user id and no payload.
type Event struct {
	// Queue is Options.Name.
	Queue   string
	Kind    EventKind
	Channel Channel
	// Items is the number of notifications concerned (1 for enqueue events).
	Items int
	// Err is the cause of EventUnavailable, EventRefused and EventSendFailed,
	// and of an EventHeld caused by unreadable preferences.
	Err error
}

// Observer receives what a [Queue], [Consumer] or [Outbox] does.
// Implementations must be safe for concurrent use, fast, and must not call
// back. The otel package implements it (tierotel.NewNotifyObserver).
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
