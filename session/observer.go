package session

import "github.com/tiercache/tiercache/session/sessionevent"

// The Observer, its events and their helpers are defined in package
// sessionevent, which imports nothing but the standard library, so that an
// Observer (such as the otel package's) can be written without importing
// this package and go-redis with it. They are the same types under the
// same names here.

// EventKind says what an [Event] reports. See [sessionevent.EventKind].
type EventKind = sessionevent.EventKind

// Event is something a [Manager] did or noticed. See [sessionevent.Event].
//
// WARNING: User is the user as the application gave it, for the
// application's own use. Telemetry must use UserTag, the user's keyed
// hash; the otel package does. No event carries a token.
type Event = sessionevent.Event

// Observer hears of what a [Manager] does. Implementations must be safe
// for concurrent use, fast (they run on the caller's goroutine) and must
// not call back into the Manager. Reads served from L1 are counted
// ([Manager.Stats]), not reported one by one. See [sessionevent.Observer].
type Observer = sessionevent.Observer

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc = sessionevent.ObserverFunc

// NoopObserver is an [Observer] that does nothing. The zero value is ready.
type NoopObserver = sessionevent.NoopObserver

// The event kinds; see [sessionevent.EventCreated] and the others.
const (
	// EventCreated: a session was created (Create, or the HTTP Login).
	EventCreated = sessionevent.EventCreated
	// EventRenewed: a session moved to a new token.
	EventRenewed = sessionevent.EventRenewed
	// EventRevoked: Count sessions were ended, for Reason.
	EventRevoked = sessionevent.EventRevoked
	// EventNewDevice: a session was created from a device that none of the
	// user's other live sessions has.
	EventNewDevice = sessionevent.EventNewDevice
	// EventNewIP: a live session was used from an address it was not seen
	// from before (on this instance).
	EventNewIP = sessionevent.EventNewIP
	// EventFallback: Redis could not be reached and the Manager answered
	// without it.
	EventFallback = sessionevent.EventFallback
)

// Fallback reasons, as found in [Event].Reason of an EventFallback.
const (
	ReasonRedisError   = sessionevent.ReasonRedisError
	ReasonRedisTimeout = sessionevent.ReasonRedisTimeout
	ReasonBreakerOpen  = sessionevent.ReasonBreakerOpen
)
