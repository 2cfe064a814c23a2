package onetime

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/primopts"
	"github.com/tiercache/tiercache/internal/redisconf"
)

// Defaults of [Options].
const (
	DefaultNamespace   = "onetime"
	DefaultTimeout     = time.Second
	DefaultMaxAttempts = 5
	DefaultLockout     = 15 * time.Minute
	DefaultCodeDigits  = 6
	// MaxDataBytes bounds what a token carries (Mint's data).
	MaxDataBytes = 64 << 10
)

// Options configures a [Store]. New copies it.
type Options struct {
	// Client is the Redis client; the Store never closes it. It must bound
	// its calls by context deadlines (ContextTimeoutEnabled). Required.
	Client redis.UniversalClient
	// Name names the store in telemetry. Default: Namespace.
	Name string
	// Namespace prefixes every key. It may not contain control characters,
	// '{' or '}'. Default: "onetime".
	Namespace string
	// Secret keys the hashes stored in Redis (HMAC-SHA256), the same on
	// every instance, at least 32 bytes. Tokens are 256 random bits and
	// need no secret; short numeric codes do, because anyone who reads
	// Redis could otherwise try the 10^6 codes against a plain hash in a
	// second. Without it the code methods fail with ErrInvalidOptions.
	Secret []byte

	// MaxAttempts is how many wrong codes a subject may enter for a purpose
	// before it is locked out. Default: 5.
	MaxAttempts int
	// Lockout is how long a subject stays locked out. Default: 15 minutes.
	Lockout time.Duration
	// CodeDigits is the length of a numeric code, 4 to 10. Default: 6.
	CodeDigits int

	// Timeout bounds every Redis call. Default: 1 second.
	Timeout time.Duration
	// Breaker guards the Redis calls: after Redis failed several times in
	// a row, calls fail closed at once instead of each waiting for
	// Timeout, and one probe at a time finds out whether Redis is back.
	// Default: NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown),
	// 5 failures and 5 seconds; NoBreaker turns it off.
	Breaker   Breaker
	NoBreaker bool

	// AllowEvictingRedis skips the check, made by New, that every Redis
	// master has maxmemory-policy noeviction.
	//
	// WARNING: under an evicting policy Redis may delete a subject's wrong
	// attempt counter or lockout under memory pressure, and an attacker
	// guessing codes gets a fresh set of attempts. (An evicted token only
	// stops working.) Set it only if the policy cannot be read and you know
	// it is noeviction, or for a disposable test server.
	AllowEvictingRedis bool

	// Observer receives what the store does. Default: NoopObserver.
	Observer Observer
}

func (o *Options) withDefaults() (Options, error) {
	c := primopts.Copy(o)
	bad := func(format string, a ...any) (Options, error) {
		return c, primopts.Invalid(ErrInvalidOptions, format, a...)
	}
	if why := primopts.Names(c.Client, &c.Namespace, &c.Name, DefaultNamespace); why != "" {
		return bad("%s", why)
	}
	if len(c.Secret) > 0 && len(c.Secret) < 32 {
		return bad("Secret has %d bytes, want at least 32", len(c.Secret))
	}
	c.Secret = append([]byte(nil), c.Secret...)
	if c.MaxAttempts < 0 || c.Lockout < 0 || c.Timeout < 0 || c.CodeDigits < 0 {
		return bad("negative MaxAttempts, Lockout, Timeout or CodeDigits")
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Lockout == 0 {
		c.Lockout = DefaultLockout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CodeDigits == 0 {
		c.CodeDigits = DefaultCodeDigits
	}
	if c.CodeDigits < 4 || c.CodeDigits > 10 {
		return bad("CodeDigits %d is outside 4..10", c.CodeDigits)
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	c.Breaker = primopts.Breaker(c.NoBreaker, c.Breaker, func() Breaker { return NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown) })
	return c, nil
}

func checkNamespace(ns string) error {
	if why := redisconf.BadNamespace(ns); why != "" {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, why)
	}
	return nil
}
