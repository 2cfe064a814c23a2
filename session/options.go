package session

import (
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tier"
)

// Defaults of [Options]. The timeouts follow OWASP's Session Management
// Cheat Sheet (idle 15–30 minutes for low-risk applications, an absolute
// timeout whatever the activity) and the re-authentication bounds of OWASP
// ASVS 4.0 §3.3.2 at level 2 (12 hours, or 30 minutes of inactivity), which
// are those of NIST SP 800-63B for AAL2. An application that handles
// high-value operations should shorten IdleTimeout (2–5 minutes) and
// re-authenticate before them.
const (
	DefaultNamespace       = "sess"
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	// DefaultTouchFraction: last-seen is written at most once per tenth of
	// the idle window (3 minutes with the default idle timeout).
	DefaultTouchFraction   = 0.1
	DefaultL1TTL           = time.Minute
	DefaultNegativeTTL     = 30 * time.Second
	DefaultTimeout         = 200 * time.Millisecond
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 2 * time.Second
	DefaultMaxPerUser      = 64
	DefaultMaxFieldBytes   = 64 << 10
	// MinSecret is the shortest Options.Secret accepted.
	MinSecret = 16
	// maxUserBytes bounds a user id (it is stored in every session).
	maxUserBytes = 512
	// maxClientBytes bounds a device label or address as stored.
	maxClientBytes = 256
)

// Options configures a [Manager]. New copies it; later changes have no
// effect.
type Options struct {
	// Client is the Redis the sessions live in: a *redis.Client,
	// *redis.ClusterClient or failover client, created and closed by the
	// caller, with ContextTimeoutEnabled. Required.
	Client redis.UniversalClient
	// Invalidator carries every revoke, renew and field change to the other
	// instances' L1 (an *invalidate.Bus, running). Nil means no bus: an
	// instance then learns of another's change only when its L1 copy ends
	// (L1TTL), which is only right for a single instance.
	Invalidator tier.Invalidator
	// Secret keys the HMAC-SHA256 that turns tokens and users into the
	// hashes that Redis, the bus and telemetry carry. Every instance must
	// use the same secret. Required, at least MinSecret bytes.
	Secret []byte
	// Namespace prefixes every key and names the bus channel; unique among
	// the managers sharing a Redis. No '{', '}' or control characters.
	// Default: "sess".
	Namespace string

	// IdleTimeout ends a session that saw no activity for this long (as
	// recorded at touch granularity; see TouchFraction). Default: 30 min.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after it was created,
	// whatever its activity; Renew does not extend it. Default: 12 h.
	AbsoluteTimeout time.Duration
	// TouchFraction, in (0, 1): a request records activity (last-seen, and
	// the idle deadline moves on) only if this fraction of IdleTimeout
	// has passed since the last record. A session may therefore end up to
	// that much earlier than IdleTimeout after the last request, never
	// later. Default: 0.1.
	TouchFraction float64

	// L1TTL is how long an instance keeps a session in process memory
	// before reading it from Redis again, even if it heard of no change.
	// Default: 1 min.
	L1TTL time.Duration
	// NegativeTTL is how long an instance remembers that a token names no
	// session (so a revoked or forged cookie costs Redis one read per
	// instance per NegativeTTL). Default: 30 s.
	NegativeTTL time.Duration
	// L1MaxCost bounds the process memory the sessions take, in bytes.
	// Default: tier's (64 MiB).
	L1MaxCost int64

	// Timeout bounds every Redis call. Default: 200 ms.
	Timeout time.Duration
	// BreakerFailures is how many Redis failures in a row open the circuit
	// breaker: while it is open, no call waits for Redis. Default: 5.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before one call
	// probes Redis again. Default: 2 s.
	BreakerCooldown time.Duration

	// MaxPerUser bounds a user's live sessions: creating one more ends the
	// least recently seen. Default: 64.
	MaxPerUser int
	// MaxFieldBytes bounds one field's value. Default: 64 KiB.
	MaxFieldBytes int

	// Observer hears of session events (created, renewed, revoked, new
	// device, new address, fallbacks). Default: NoopObserver.
	Observer Observer
	// CacheObserver is the tier.Observer of the L1 cache (for example the
	// otel package's). Default: none.
	CacheObserver tier.Observer
}

// withDefaults validates o and returns a copy with the defaults filled in.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	bad := func(format string, a ...any) (Options, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	if c.Client == nil {
		return bad("nil Client")
	}
	if !contextTimeouts(c.Client) {
		return bad("the client ignores context deadlines: set ContextTimeoutEnabled in its options")
	}
	if len(c.Secret) < MinSecret {
		return bad("Secret must be at least %d bytes", MinSecret)
	}
	c.Secret = append([]byte(nil), c.Secret...)
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if strings.ContainsAny(c.Namespace, "{}") || strings.ContainsFunc(c.Namespace, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return bad("namespace %q contains a control character, '{' or '}'", c.Namespace)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"IdleTimeout", &c.IdleTimeout, DefaultIdleTimeout},
		{"AbsoluteTimeout", &c.AbsoluteTimeout, DefaultAbsoluteTimeout},
		{"L1TTL", &c.L1TTL, DefaultL1TTL},
		{"NegativeTTL", &c.NegativeTTL, DefaultNegativeTTL},
		{"Timeout", &c.Timeout, DefaultTimeout},
		{"BreakerCooldown", &c.BreakerCooldown, DefaultBreakerCooldown},
	} {
		if *d.v < 0 {
			return bad("%s is negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.IdleTimeout < time.Millisecond || c.AbsoluteTimeout < time.Millisecond {
		return bad("timeouts below 1 ms")
	}
	if c.IdleTimeout > c.AbsoluteTimeout {
		c.IdleTimeout = c.AbsoluteTimeout
	}
	if c.TouchFraction == 0 {
		c.TouchFraction = DefaultTouchFraction
	}
	if c.TouchFraction <= 0 || c.TouchFraction >= 1 {
		return bad("TouchFraction %v is outside (0, 1)", c.TouchFraction)
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{
		{"BreakerFailures", &c.BreakerFailures, DefaultBreakerFailures},
		{"MaxPerUser", &c.MaxPerUser, DefaultMaxPerUser},
		{"MaxFieldBytes", &c.MaxFieldBytes, DefaultMaxFieldBytes},
	} {
		if *n.v < 0 {
			return bad("%s is negative", n.name)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.L1MaxCost < 0 {
		return bad("L1MaxCost is negative")
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	return c, nil
}

// contextTimeouts reports whether client bounds its I/O by context
// deadlines. A client type it does not know is trusted.
func contextTimeouts(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}
