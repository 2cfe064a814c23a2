package tierotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/tier"
)

// The attributes the Observer records. The cache.* names follow the
// project's design (there is no OpenTelemetry semantic convention for
// caches yet); error.type is the semantic convention's.
const (
	// keyCacheName is tier.Options.Name.
	keyCacheName = attribute.Key("cache.name")
	// keyCacheTier is "l1", "l2" or "origin".
	keyCacheTier = attribute.Key("cache.tier")
	// keyCacheHit says whether an L2 get or lease found a value.
	keyCacheHit = attribute.Key("cache.hit")
	// keyLoadFound says whether a load found the key at the origin (false:
	// "not found"). It is not cache.hit: a load is what a cache miss does.
	keyLoadFound = attribute.Key("cache.load.found")
	// keyKeyHash is the key as the cache gives it to observers: its keyed
	// hash (HMAC-SHA256, 16 hex digits) unless tier.Options.ObserveRawKeys.
	keyKeyHash = attribute.Key("cache.key.hash")
	// keyFallbackReason is why a read skipped or lost L2
	// (tier.ReasonBreakerOpen, ...).
	keyFallbackReason = attribute.Key("cache.fallback.reason")
	// keyResult is "hit", "miss" or "error" on tiercache.requests.
	keyResult = attribute.Key("cache.result")
	// keyOperation is "get", "lease", "set" or "delete" on tiercache.l2.duration.
	keyOperation = attribute.Key("cache.operation")
	// keyBreakerState is a circuit breaker state ("closed", "open",
	// "half_open") on tiercache.breaker.state.
	keyBreakerState = attribute.Key("cache.breaker.state")
	// keyBreakerFrom and keyBreakerTo are the states of a breaker change,
	// on the cache.breaker span event.
	keyBreakerFrom = attribute.Key("cache.breaker.from")
	keyBreakerTo   = attribute.Key("cache.breaker.to")
	// keyDropReason says why L1 writes were lost ("buffer_full",
	// "rejected") or why L1 was dropped as a whole (the tier's reason).
	keyDropReason = attribute.Key("cache.drop.reason")
	// keyErrorType is the semantic conventions' error.type.
	keyErrorType = semconv.ErrorTypeKey
)

// The values of cache.result.
const (
	resultHit   = "hit"
	resultMiss  = "miss"
	resultError = "error"
)

// errorType returns the error.type of err: a short fixed name for the
// failures a cache sees most ("timeout", "canceled", "corrupt",
// "value_too_large", "panic"), otherwise the semantic conventions' default
// (the error's Go type, or its ErrorType method). The value never contains
// the error's message, so it never contains a key or a value.
func errorType(err error) string {
	var pe *tier.PanicError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &pe):
		return "panic"
	case errors.Is(err, tier.ErrValueTooLarge):
		return "value_too_large"
	case errors.Is(err, tier.ErrCorrupt), errors.Is(err, codec.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, tier.ErrClosed):
		return "closed"
	}
	return semconv.ErrorType(err).Value.AsString()
}

// errorDescription is the span status description for err: its message,
// except for a loader panic, whose message carries the panic value and a
// whole stack (the value may be anything the loader held).
func errorDescription(err error) string {
	var pe *tier.PanicError
	if errors.As(err, &pe) {
		return "tier: loader panicked"
	}
	return err.Error()
}
