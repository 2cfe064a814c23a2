package ratelimit

import (
	"context"
	"time"
)

// Fallback reasons, as found in [Event.Reason].
const (
	// ReasonBreakerOpen: the circuit breaker is open; Redis was not asked.
	ReasonBreakerOpen = "breaker_open"
	// ReasonRedisError: the Redis call failed.
	ReasonRedisError = "redis_error"
	// ReasonRedisTimeout: the Redis call did not answer within
	// Options.Timeout.
	ReasonRedisTimeout = "redis_timeout"
	// ReasonNoRedis: the Limiter has no Redis client (Options.Client nil).
	ReasonNoRedis = "no_redis"
	// ReasonLocalFull: the local limiter tracks Options.LocalActors
	// (policy, actor) pairs already and could not take this one; the call
	// was denied.
	ReasonLocalFull = "local_full"
)

// Event reports one decision to an [Observer].
type Event struct {
	// Policy is the policy the call named.
	Policy string
	// Actor is the actor's keyed hash (HMAC-SHA256 under
	// Options.ActorSecret, the same as in Redis keys), never the actor.
	// Empty for SourceDenialCache when the Observer is the NoopObserver.
	Actor string
	// Decision is what was decided. Its Windows slice must not be kept or
	// changed.
	Decision *Decision
	// Reason says why a fallback happened (Reason* constants); empty
	// when Redis or the denial cache decided.
	Reason string
	// Err is the Redis error behind a fallback, if any.
	Err error
	// Duration is how long the Redis call took, 0 when none was made.
	Duration time.Duration
}

// Observer receives every decision of a [Limiter]. Implementations must be
// safe for concurrent use, must be fast (they run on the caller's
// goroutine, also for decisions answered from memory), and must not call
// back into the Limiter. The otel package implements it
// (tierotel.NewRateLimitObserver).
type Observer interface {
	// Decided is called once per decision, after it was taken, on the
	// caller's context.
	Decided(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to an [Observer].
type ObserverFunc func(ctx context.Context, e Event)

// Decided calls f.
func (f ObserverFunc) Decided(ctx context.Context, e Event) { f(ctx, e) }

// NoopObserver is an [Observer] that does nothing. The zero value is ready.
type NoopObserver struct{}

// Decided does nothing.
func (NoopObserver) Decided(context.Context, Event) {}

var (
	_ Observer = NoopObserver{}
	_ Observer = ObserverFunc(nil)
)
