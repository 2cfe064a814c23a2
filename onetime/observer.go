package onetime

import "context"

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds.
const (
	// EventMinted: a token or code was issued.
	EventMinted EventKind = iota + 1
	// EventConsumed: a token or code was used, successfully.
	EventConsumed
	// EventExpiredOrUsed: a token or code was refused as expired, used,
	// unknown or malformed.
	EventExpiredOrUsed
	// EventWrongSubject: a token was presented for another subject (and
	// burned).
	EventWrongSubject
	// EventWrongCode: a wrong code was counted.
	EventWrongCode
	// EventLocked: a code was refused because its subject is locked out, or
	// a wrong code used the last attempt up.
	EventLocked
	// EventUnavailable: Redis could not be reached; the call failed closed.
	EventUnavailable
	// EventCorrupt: bytes in Redis did not decode (deleted, read as absent).
	EventCorrupt
)

// String returns the kind's name in snake case.
func (k EventKind) String() string {
	switch k {
	case EventMinted:
		return "minted"
	case EventConsumed:
		return "consumed"
	case EventExpiredOrUsed:
		return "expired_or_used"
	case EventWrongSubject:
		return "wrong_subject"
	case EventWrongCode:
		return "wrong_code"
	case EventLocked:
		return "locked"
	case EventUnavailable:
		return "unavailable"
	case EventCorrupt:
		return "corrupt"
	}
	return "unknown"
}

// Event is something the package did, given to [Observer.Event]. It never
// holds a token, a code, a subject or an id: only the purpose, which is one
// of the application's constants.
type Event struct {
	// Store is Options.Name (or TempDataOptions.Name).
	Store string
	Kind  EventKind
	// Purpose is the token's purpose ("verify-email", "oauth:google", ...)
	// or the temp data's name.
	Purpose string
	// Err is the cause of EventUnavailable and EventCorrupt.
	Err error
}

// Observer receives what a [Store] or [TempData] does. Implementations
// must be safe for concurrent use, fast, and must not call back. The otel
// package implements it (tierotel.NewOneTimeObserver).
type Observer interface {
	Event(ctx context.Context, e Event)
}

// NoopObserver is an [Observer] that does nothing.
type NoopObserver struct{}

// Event does nothing.
func (NoopObserver) Event(context.Context, Event) {}

// Breaker is a circuit breaker guarding Redis calls (the same contract as
// idempotency.Breaker). Implementations must be safe for concurrent use.
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
