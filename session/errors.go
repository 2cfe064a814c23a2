package session

import "errors"

// Errors returned by the [Manager]. Check them with errors.Is.
var (
	// ErrInvalidOptions: New was given options it cannot work with.
	ErrInvalidOptions = errors.New("session: invalid options")
	// ErrNotFound: the token names no live session: it was never issued,
	// was revoked, renewed (the old token), or timed out. The caller should
	// treat the request as unauthenticated.
	ErrNotFound = errors.New("session: not found")
	// ErrExpired matches the errors of a session that reached its idle or
	// absolute timeout (it also matches [ErrNotFound]).
	ErrExpired = errors.New("session: expired")
	// ErrMalformed: the token does not have the shape of a token this
	// package issues (it also matches [ErrNotFound]). Redis is not asked.
	ErrMalformed = errors.New("session: malformed token")
	// ErrUnavailable: Redis could not be reached (or the circuit breaker
	// is open) and the answer could not be given without it: a write, or a
	// read that L1 could not serve within its bound. The wrapped error says
	// why.
	ErrUnavailable = errors.New("session: redis unavailable")
	// ErrConflict: an [Update] with IfVersion found another version.
	ErrConflict = errors.New("session: version conflict")
	// ErrInvalidField: a field name is empty, starts with '_' (reserved),
	// or a value is too large.
	ErrInvalidField = errors.New("session: invalid field")
	// ErrInvalidUser: the user is empty or too long.
	ErrInvalidUser = errors.New("session: invalid user")
	// ErrNotPropagated matches the error of a change that is done in Redis
	// but whose invalidation could not be published to the other
	// instances yet: it is kept and replayed, and meanwhile another
	// instance may serve its L1 copy up to Options.L1TTL (or the bus's
	// StaleBound if its subscription is down).
	ErrNotPropagated = errors.New("session: invalidation not propagated yet")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("session: manager closed")
)

// notFound is ErrNotFound with a more precise cause that errors.Is also
// matches.
type notFound struct{ cause error }

func (e *notFound) Error() string   { return e.cause.Error() }
func (e *notFound) Unwrap() []error { return []error{ErrNotFound, e.cause} }

var (
	errExpired   error = &notFound{ErrExpired}
	errMalformed error = &notFound{ErrMalformed}
)
