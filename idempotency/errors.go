package idempotency

import (
	"errors"
	"time"
)

var (
	// ErrInvalidOptions is wrapped by the errors of [New] and
	// [Store.Middleware] for options that cannot work.
	ErrInvalidOptions = errors.New("idempotency: invalid options")
	// ErrEvictingRedis is wrapped by the error of [New] when Redis may evict
	// records (its maxmemory-policy is not noeviction) or when the policy
	// cannot be read. See Options.AllowEvictingRedis.
	ErrEvictingRedis = errors.New("idempotency: redis may evict idempotency records")
	// ErrUnavailable is wrapped by every error caused by Redis being
	// unreachable, slow or refusing a call, and by a call refused because
	// the circuit breaker is open. The middleware answers 503: it fails
	// closed.
	ErrUnavailable = errors.New("idempotency: redis unavailable")
	// ErrCompletionPending is wrapped, with ErrUnavailable or another cause,
	// by the error of [Store.Begin] when this instance ran the key's
	// request, its result waits to be recorded (or was being recorded while
	// Begin waited), and Begin could not reach Redis (the breaker refused,
	// the call failed): the request may be done and must not run again, not
	// even with RouteOptions.FailOpen (the middleware answers 503).
	ErrCompletionPending = errors.New("idempotency: the request is done; its result is not recorded yet")
	// ErrMismatch is returned by [Store.Begin] when the key was first used
	// with another request (another fingerprint). The middleware answers 422.
	ErrMismatch = errors.New("idempotency: key reused with another request")
	// ErrLeaseLost is returned by the methods of an [Attempt] that a newer
	// attempt has superseded (it took the expired lease over, so it holds a
	// larger fence), or whose record was completed by another attempt. It is
	// also the cause of the context the middleware gives the handler once a
	// heartbeat finds the lease lost (see context.Cause).
	ErrLeaseLost = errors.New("idempotency: lease lost to a newer attempt")
	// ErrCorrupt is returned when a record in Redis does not have the shape
	// this package writes. The record is left alone: with no trustworthy
	// record, running the request again could run it twice.
	ErrCorrupt = errors.New("idempotency: record corrupt")
	// ErrInvalidKey is returned for an empty or oversized idempotency key,
	// or one with characters outside printable ASCII.
	ErrInvalidKey = errors.New("idempotency: invalid key")
	// ErrClosed is returned by the methods of a closed [Store].
	ErrClosed = errors.New("idempotency: store closed")
	// ErrResponseTooLarge is what a handler's Write returns once its
	// response passes RouteOptions.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("idempotency: response too large to record")
)

// InFlightError is returned by [Store.Do] while another attempt holds a live
// lease on the key. It matches [ErrInFlight].
type InFlightError struct {
	// RetryAfter is how long the lease has left, on Redis's clock.
	RetryAfter time.Duration
}

// ErrInFlight matches an [*InFlightError] with errors.Is.
var ErrInFlight = errors.New("idempotency: request in flight")

// Error returns "idempotency: request in flight".
func (e *InFlightError) Error() string { return ErrInFlight.Error() }

// Is reports whether target is [ErrInFlight].
func (e *InFlightError) Is(target error) bool { return target == ErrInFlight }
