// Package primopts holds the parts of Options.withDefaults that the
// primitives beside the cache (ratelimit, idempotency, onetime, notify,
// counters) share: the error that wraps each package's own
// ErrInvalidOptions, the client, namespace and name checks, numeric
// defaults and the default circuit breaker. Each package keeps its own
// sentinels and messages; this package only spells them once.
package primopts

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redisconf"
)

// Copy returns a copy of the options *o, or the zero options if o is nil:
// New copies its options, and a nil one means the defaults.
func Copy[T any](o *T) T {
	var c T
	if o != nil {
		c = *o
	}
	return c
}

// Invalid returns an error wrapping invalid (a package's ErrInvalidOptions)
// followed by ": " and the formatted message.
func Invalid(invalid error, format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{invalid}, a...)...)
}

// Names checks that client is set, fills an empty *namespace with def,
// checks it with [redisconf.BadNamespace] and fills an empty *name with
// the namespace. It returns why the options cannot be used, or "".
func Names(client redis.UniversalClient, namespace, name *string, def string) string {
	if client == nil {
		return "nil Client"
	}
	return Namespace(namespace, name, def)
}

// Namespace is [Names] without the client check, for a primitive that
// runs without Redis. A nil name is left alone.
func Namespace(namespace, name *string, def string) string {
	if *namespace == "" {
		*namespace = def
	}
	if why := redisconf.BadNamespace(*namespace); why != "" {
		return why
	}
	if name != nil && *name == "" {
		*name = *namespace
	}
	return ""
}

// Number is the type of a numeric option (int, int64, time.Duration).
type Number interface {
	~int | ~int64
}

// Field is a numeric option: its name in messages, where it is, and the
// value a zero becomes.
type Field[T Number] struct {
	Name string
	V    *T
	Def  T
}

// Defaults fills each zero field with its default, in order, and returns
// "<Name> is negative" for the first negative one, or "".
func Defaults[T Number](fs ...Field[T]) string {
	for _, f := range fs {
		if *f.V < 0 {
			return f.Name + " is negative"
		}
		if *f.V == 0 {
			*f.V = f.Def
		}
	}
	return ""
}

// Breaker returns the circuit breaker a primitive uses: none if off
// (Options.NoBreaker), b if set, or else newDefault().
func Breaker[B comparable](off bool, b B, newDefault func() B) B {
	var none B
	switch {
	case off:
		return none
	case b == none:
		return newDefault()
	}
	return b
}
