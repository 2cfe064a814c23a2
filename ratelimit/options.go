package ratelimit

import (
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of [Options].
const (
	DefaultNamespace       = "rl"
	DefaultTimeout         = 100 * time.Millisecond
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 5 * time.Second
	DefaultDenialCacheSize = 100_000
	DefaultLocalActors     = 100_000
	// MinActorSecret is the shortest Options.ActorSecret accepted.
	MinActorSecret = 16
)

// Clock tells the time. Tests inject a fake one. Only the in-process parts
// (the denial cache, the local limiter, the breaker) read it: windows in
// Redis run on Redis's clock.
type Clock interface {
	Now() time.Time
}

// Options configures a [Limiter]. New copies it; later changes have no
// effect.
type Options struct {
	// Client is the Redis the quotas live in: a *redis.Client,
	// *redis.ClusterClient, *redis.Ring or failover client, created and
	// closed by the caller. It must have ContextTimeoutEnabled, or a
	// stalled Redis holds callers past Timeout. Nil means no Redis: every
	// decision is an outage decision (ReasonNoRedis), which is how an
	// application runs its limits when Redis is absent.
	Client redis.UniversalClient
	// Policies are the policies calls may name. Required.
	Policies []Policy
	// ActorSecret keys the HMAC-SHA256 that hashes actors before they reach
	// Redis keys or telemetry. Every instance sharing the quotas must use
	// the same secret, or they count separately. Required, at least 16
	// bytes.
	ActorSecret []byte
	// Namespace prefixes every key; it must be unique among the limiters
	// sharing a Redis. No '{', '}' or control characters. Default: "rl".
	Namespace string
	// Timeout bounds each Redis call; past it the call is an outage
	// decision (ReasonRedisTimeout). Default: 100 ms.
	Timeout time.Duration
	// BreakerFailures is how many Redis failures in a row open the circuit
	// breaker: while it is open, calls do not wait for Redis at all.
	// Default: 5.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before one call
	// probes Redis again. Default: 5 s.
	BreakerCooldown time.Duration
	// DenialCacheSize bounds the (policy, actor) denials kept in memory.
	// Default: 100,000. NoDenialCache turns the cache off: every call goes
	// to Redis.
	DenialCacheSize int
	NoDenialCache   bool
	// LocalActors bounds the (policy, actor) logs the local limiter keeps
	// (each costs 8 bytes per unit of the policy's largest local quota).
	// Default: 100,000.
	LocalActors int
	// Observer receives every decision. Default: NoopObserver.
	Observer Observer
	// Clock tells the time in process. Default: the system clock.
	Clock Clock
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// withDefaults validates o and returns a copy with the defaults filled in.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	bad := func(format string, a ...any) (Options, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	if len(c.Policies) == 0 {
		return bad("no policies")
	}
	if len(c.ActorSecret) < MinActorSecret {
		return bad("ActorSecret must be at least %d bytes", MinActorSecret)
	}
	c.ActorSecret = append([]byte(nil), c.ActorSecret...)
	c.Policies = append([]Policy(nil), c.Policies...)
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
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{
		{"BreakerFailures", &c.BreakerFailures, DefaultBreakerFailures},
		{"DenialCacheSize", &c.DenialCacheSize, DefaultDenialCacheSize},
		{"LocalActors", &c.LocalActors, DefaultLocalActors},
	} {
		if *n.v < 0 {
			return bad("%s is negative", n.name)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.Client != nil && !contextTimeouts(c.Client) {
		return bad("the client ignores context deadlines: set ContextTimeoutEnabled in its options")
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
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
