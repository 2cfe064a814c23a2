package onetime

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalidOptions is wrapped by the errors of [New] and
	// [NewTempData] for options that cannot work, and by those of the code
	// methods when Options.Secret is not set.
	ErrInvalidOptions = errors.New("onetime: invalid options")
	// ErrEvictingRedis is wrapped by the error of [New] when Redis may evict
	// keys. See Options.AllowEvictingRedis.
	ErrEvictingRedis = errors.New("onetime: redis may evict attempt counters")
	// ErrUnavailable is wrapped by every error caused by Redis being
	// unreachable, slow or refusing a call, or by an open breaker. Nothing
	// is ever accepted without Redis: the package fails closed.
	ErrUnavailable = errors.New("onetime: redis unavailable")
	// ErrExpiredOrUsed: the token or code expired, was used already, was
	// never issued, or is malformed. These cases are not told apart, so
	// that the answer says nothing about which tokens exist.
	ErrExpiredOrUsed = errors.New("onetime: expired or already used")
	// ErrWrongSubject: the token was issued to another subject (another
	// user, another pre-login session). The token is burned: it was
	// presented by someone it was not meant for.
	ErrWrongSubject = errors.New("onetime: token issued to another subject")
	// ErrWrongCode: the code does not match; an [*AttemptsError] says how
	// many attempts are left.
	ErrWrongCode = errors.New("onetime: wrong code")
	// ErrTooManyAttempts: too many wrong codes; the subject's codes for the
	// purpose are locked out until an [*AttemptsError]'s RetryAfter.
	ErrTooManyAttempts = errors.New("onetime: too many attempts")
	// ErrNotFound is returned by [TempData.Get] when there is no value (never
	// put, expired, deleted, or unreadable after a change of T).
	ErrNotFound = errors.New("onetime: temp data not found")
	// ErrConflict is returned by [TempData.Update] when other writers kept
	// changing the value.
	ErrConflict = errors.New("onetime: temp data changed concurrently")
	// ErrTooLarge is returned when a value is larger than its limit.
	ErrTooLarge = errors.New("onetime: value too large")
)

// AttemptsError is returned by [Store.ConsumeCode] for a wrong code and
// for a locked subject. It matches [ErrWrongCode] or [ErrTooManyAttempts].
type AttemptsError struct {
	// Locked is true once the attempts are used up.
	Locked bool
	// Remaining is how many wrong codes are still allowed (0 when Locked).
	Remaining int
	// RetryAfter is how long the lockout lasts (when Locked), on Redis's
	// clock.
	RetryAfter time.Duration
}

// Error says what happened.
func (e *AttemptsError) Error() string {
	if e.Locked {
		return fmt.Sprintf("%s: locked for %v", ErrTooManyAttempts, e.RetryAfter.Round(time.Second))
	}
	return fmt.Sprintf("%s: %d attempts left", ErrWrongCode, e.Remaining)
}

// Is matches ErrTooManyAttempts when locked, ErrWrongCode otherwise.
func (e *AttemptsError) Is(target error) bool {
	if e.Locked {
		return target == ErrTooManyAttempts
	}
	return target == ErrWrongCode
}
