package ratelimit

import (
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/primopts"
	"github.com/tiercache/tiercache/internal/redisconf"
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
	c := primopts.Copy(o)
	bad := func(format string, a ...any) (Options, error) {
		return c, primopts.Invalid(ErrInvalidOptions, format, a...)
	}
	if len(c.Policies) == 0 {
		return bad("no policies")
	}
	if len(c.ActorSecret) < MinActorSecret {
		return bad("ActorSecret must be at least %d bytes", MinActorSecret)
	}
	c.ActorSecret = append([]byte(nil), c.ActorSecret...)
	c.Policies = append([]Policy(nil), c.Policies...)
	if why := primopts.Namespace(&c.Namespace, nil, DefaultNamespace); why != "" {
		return bad("%s", why)
	}
	if why := primopts.Defaults(
		primopts.Field[time.Duration]{Name: "Timeout", V: &c.Timeout, Def: DefaultTimeout},
		primopts.Field[time.Duration]{Name: "BreakerCooldown", V: &c.BreakerCooldown, Def: DefaultBreakerCooldown},
	); why != "" {
		return bad("%s", why)
	}
	if why := primopts.Defaults(
		primopts.Field[int]{Name: "BreakerFailures", V: &c.BreakerFailures, Def: DefaultBreakerFailures},
		primopts.Field[int]{Name: "DenialCacheSize", V: &c.DenialCacheSize, Def: DefaultDenialCacheSize},
		primopts.Field[int]{Name: "LocalActors", V: &c.LocalActors, Def: DefaultLocalActors},
	); why != "" {
		return bad("%s", why)
	}
	if c.Client != nil && !redisconf.ContextTimeouts(c.Client) {
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
