package tier

import (
	"errors"
	"fmt"
	"runtime/debug"
)

var (
	// ErrNotFound reports that the key has no value: the loader said so (now
	// or earlier, as a cached negative entry), or Get found nothing. A Remote
	// returns it for a missing key.
	ErrNotFound = errors.New("tier: key not found")
	// ErrClosed is returned by every call on a closed [Cache].
	ErrClosed = errors.New("tier: cache closed")
	// ErrInvalidKey is returned for an empty key or one longer than
	// [Options.MaxKeyBytes].
	ErrInvalidKey = errors.New("tier: invalid key")
	// ErrInvalidOptions is returned by [New] for options that cannot work.
	ErrInvalidOptions = errors.New("tier: invalid options")
	// ErrNoNamespace is returned by [New] (with [ErrInvalidOptions]) for
	// a cache with an L2 but no [Options.Namespace].
	ErrNoNamespace = errors.New("tier: no namespace")
	// ErrValueTooLarge is matched (errors.Is) by every [*ValueTooLargeError].
	ErrValueTooLarge = errors.New("tier: value too large")
	// ErrLoaderGoexit is returned to the callers waiting on a load whose
	// loader called runtime.Goexit.
	ErrLoaderGoexit = errors.New("tier: loader called runtime.Goexit")
	// errLeaderPanicked is what the callers waiting on a flight get when
	// its leader's goroutine panicked before handing the flight on (in an
	// Observer, say).
	errLeaderPanicked = errors.New("tier: the caller reading the key panicked")
	// errNotSent is the error of a lease whose deadline ended while it
	// waited for a round trip to its shard (see leaseGroup): Redis never saw
	// it, so it is neither a failure nor a success of the shard.
	errNotSent = errors.New("tier: the call's deadline ended before a round trip took it")
	// errCarrierPanicked is the outcome of the leases and writes that a
	// lease round trip carried when the L2 backend panicked in it.
	errCarrierPanicked = errors.New("tier: the L2 backend panicked in the round trip that carried this call")
	// ErrL2 is matched by the errors of calls that could not reach L2:
	// Set, Delete and the other writes, and Get (which has no origin to
	// fall back on). Reads with a loader fall back to the origin instead.
	ErrL2 = errors.New("tier: l2 unavailable")
	// ErrCorrupt is returned by a [Remote] for bytes it refuses to hand
	// over (for example a stored value of the wrong type); the cache treats
	// it as a miss and deletes the key.
	ErrCorrupt = errors.New("tier: corrupt value")
)

// ValueTooLargeError reports a value whose encoding is larger than the limit.
// The cache refuses to store it; GetOrLoad still returns the loaded value to
// its callers and reports the refusal through the [Observer] and
// [Stats.Refused].
type ValueTooLargeError struct {
	Size  int // encoded size in bytes (for a Remote: at least this many)
	Limit int // the configured maximum
}

// Error implements error.
func (e *ValueTooLargeError) Error() string {
	return fmt.Sprintf("tier: value too large: %d bytes, limit %d", e.Size, e.Limit)
}

// Is reports whether target is [ErrValueTooLarge].
func (e *ValueTooLargeError) Is(target error) bool { return target == ErrValueTooLarge }

// PanicError is what every caller waiting on a panicking loader panics with.
// It carries the loader's panic value and the stack where it panicked.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements error.
func (p *PanicError) Error() string {
	return fmt.Sprintf("tier: loader panicked: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns the panic value if it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// notFoundError marks a loader error as a "not found" while keeping it, so
// errors.Is matches both ErrNotFound and the loader's own error (for
// example sql.ErrNoRows).
type notFoundError struct{ err error }

func (e *notFoundError) Error() string   { return e.err.Error() }
func (e *notFoundError) Unwrap() []error { return []error{ErrNotFound, e.err} }

func newPanicError(v any) *PanicError {
	return &PanicError{Value: v, Stack: debug.Stack()}
}
