package sessionevent

import (
	"context"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds.
const (
	// EventCreated: a session was created (Create, or the HTTP Login).
	EventCreated EventKind = iota + 1
	// EventRenewed: a session moved to a new token; Ref is the new ref,
	// OldRef the old one.
	EventRenewed
	// EventRevoked: Count sessions were ended by Reason ("revoke",
	// "revoke_all", "revoke_others", "evicted": a user's oldest session
	// ended because MaxPerUser was reached).
	EventRevoked
	// EventNewDevice: a session was created from a device that none of the
	// user's other live sessions has. Device and IP are the new session's.
	// Not reported for a user's only session.
	EventNewDevice
	// EventNewIP: a live session was used from an address it was not seen
	// from before (on this instance): a sign of a stolen cookie, or of a
	// phone changing networks. IP is the new address, PrevIP the old.
	EventNewIP
	// EventFallback: Redis could not be reached (Reason: "redis_error",
	// "redis_timeout", "breaker_open") and the Manager answered without it:
	// a read served from L1 without recording its activity
	// (Op "touch"), or a call refused (Op "read", "write").
	EventFallback
)

// String returns the kind's name in snake case.
func (k EventKind) String() string {
	switch k {
	case EventCreated:
		return "created"
	case EventRenewed:
		return "renewed"
	case EventRevoked:
		return "revoked"
	case EventNewDevice:
		return "new_device"
	case EventNewIP:
		return "new_ip"
	case EventFallback:
		return "fallback"
	}
	return "unknown"
}

// Fallback reasons, as found in [Event.Reason] of an EventFallback.
const (
	ReasonRedisError   = "redis_error"
	ReasonRedisTimeout = "redis_timeout"
	ReasonBreakerOpen  = "breaker_open"
)

// Event is something a session.Manager did or noticed.
//
// WARNING: User is the user as the application gave it, for the
// application's own use (to tell the user of a login from a new device).
// Telemetry must use UserTag, the user's keyed hash; the otel package
// does. No event carries a token.
type Event struct {
	Kind EventKind
	// User is the user as given to Create (empty when unknown, as in a
	// fallback).
	User string
	// UserTag is the user's keyed hash (the hash tag of their keys).
	UserTag string
	// Ref is the session's ref (the random, public part of its token that
	// gives no access, never the token); OldRef the previous one for
	// EventRenewed.
	Ref, OldRef string
	// Device and IP as recorded for the session; PrevIP for EventNewIP.
	Device, IP, PrevIP string
	// Count is the number of sessions an EventRevoked ended.
	Count int
	// Reason says why (EventRevoked, EventFallback).
	Reason string
	// Op is what fell back (EventFallback): "touch", "read" or "write".
	Op string
	// Err is the Redis error behind a fallback, if any.
	Err error
	// Duration is how long the Redis call took, 0 when none was made.
	Duration time.Duration
}

// Observer hears of what a session.Manager does. Implementations must be
// safe for concurrent use, fast (they run on the caller's goroutine) and
// must not call back into the Manager. Reads served from L1 are counted
// (session.Manager.Stats), not reported one by one.
type Observer interface {
	Event(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(ctx context.Context, e Event)

// Event calls f.
func (f ObserverFunc) Event(ctx context.Context, e Event) { f(ctx, e) }

// NoopObserver is an [Observer] that does nothing. The zero value is ready.
type NoopObserver struct{}

// Event does nothing.
func (NoopObserver) Event(context.Context, Event) {}

var (
	_ Observer = NoopObserver{}
	_ Observer = ObserverFunc(nil)
)
