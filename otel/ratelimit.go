package tierotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/ratelimit"
)

// The rate limiter's metrics and attributes. ratelimit.policy is
// ratelimit.Policy.Name; the actor never appears in a metric, and only as
// its keyed hash (ratelimit.actor.hash) on span events.
const (
	// Counter of decisions; ratelimit.policy, ratelimit.result (allowed,
	// denied) and ratelimit.source (redis, denial_cache, local,
	// fail_closed, fail_open).
	metricRLDecisions = "ratelimit.decisions"
	// Counter of decisions taken without Redis; ratelimit.policy,
	// ratelimit.source and ratelimit.fallback.reason (breaker_open,
	// redis_error, redis_timeout, no_redis, local_full).
	metricRLFallbacks = "ratelimit.fallbacks"
	// Histogram, seconds, of the Redis round trips of decisions;
	// ratelimit.policy and ratelimit.result (allowed, denied, or error for a
	// call that failed and fell back).
	metricRLDuration = "ratelimit.redis.duration"

	keyRLPolicy   = attribute.Key("ratelimit.policy")
	keyRLResult   = attribute.Key("ratelimit.result")
	keyRLSource   = attribute.Key("ratelimit.source")
	keyRLReason   = attribute.Key("ratelimit.fallback.reason")
	keyRLActor    = attribute.Key("ratelimit.actor.hash")
	keyRLDeniedBy = attribute.Key("ratelimit.denied_by")

	// eventRLDecision is the span event added to the caller's span.
	eventRLDecision = "ratelimit.decision"
)

// RateLimitObserver is a ratelimit.Observer that counts a Limiter's
// decisions and fallbacks and times its Redis round trips as
// OpenTelemetry metrics, and adds a "ratelimit.decision" event to the span
// in the caller's context (no span of its own: a decision answered from
// memory must stay cheap). Give it to ratelimit.Options.Observer; one
// RateLimitObserver may serve many Limiters. It is safe for concurrent
// use. Create it with [NewRateLimitObserver].
//
//	ratelimit.decisions        counter    ratelimit.policy, ratelimit.result, ratelimit.source
//	ratelimit.fallbacks        counter    ratelimit.policy, ratelimit.source, ratelimit.fallback.reason
//	ratelimit.redis.duration   histogram  s, ratelimit.policy, ratelimit.result
type RateLimitObserver struct {
	decisions metric.Int64Counter
	fallbacks metric.Int64Counter
	duration  metric.Float64Histogram

	attrs attrSets[attrKey]
}

var _ ratelimit.Observer = (*RateLimitObserver)(nil)

// NewRateLimitObserver returns a RateLimitObserver that takes its meter
// from the provider in opts (the global one by default); the tracer
// provider option has no effect, events go to the caller's span. Errors
// creating instruments go to otel.Handle; the observer works without
// those instruments.
func NewRateLimitObserver(opts ...Option) *RateLimitObserver {
	in := newInstrumentMaker(opts)
	o := &RateLimitObserver{
		decisions: in.counter(metricRLDecisions, "{decision}", "Rate limit decisions by policy, result and source."),
		fallbacks: in.counter(metricRLFallbacks, "{decision}", "Rate limit decisions taken without Redis, by policy, source and reason."),
		duration:  in.seconds(metricRLDuration, "Duration of the Redis round trips of rate limit decisions."),
	}
	in.done("rate limit")
	return o
}

// attrKey names one attribute set.
type attrKey struct {
	kind   uint8 // 0 decisions, 1 fallbacks, 2 duration
	policy string
	result string
	source ratelimit.Source
	reason string
}

func rlAttrs(k attrKey) []attribute.KeyValue {
	kvs := []attribute.KeyValue{keyRLPolicy.String(k.policy)}
	switch k.kind {
	case 0:
		kvs = append(kvs, keyRLResult.String(k.result), keyRLSource.String(k.source.String()))
	case 1:
		kvs = append(kvs, keyRLSource.String(k.source.String()), keyRLReason.String(k.reason))
	case 2:
		kvs = append(kvs, keyRLResult.String(k.result))
	}
	return kvs
}

// Decided implements ratelimit.Observer.
func (o *RateLimitObserver) Decided(ctx context.Context, e ratelimit.Event) {
	d := e.Decision
	result := "denied"
	if d.Allowed {
		result = "allowed"
	}
	o.decisions.Add(ctx, 1, o.attrs.get(attrKey{kind: 0, policy: e.Policy, result: result, source: d.Source}, rlAttrs))
	if d.Source.Fallback() {
		o.fallbacks.Add(ctx, 1, o.attrs.get(attrKey{kind: 1, policy: e.Policy, source: d.Source, reason: e.Reason}, rlAttrs))
	}
	if e.Duration > 0 {
		r := result
		if e.Err != nil {
			r = "error"
		}
		o.duration.Record(ctx, e.Duration.Seconds(), o.attrs.get(attrKey{kind: 2, policy: e.Policy, result: r}, rlAttrs))
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		keyRLPolicy.String(e.Policy),
		keyRLResult.String(result),
		keyRLSource.String(d.Source.String()),
		keyRLActor.String(e.Actor),
	}
	if d.DeniedBy != "" {
		attrs = append(attrs, keyRLDeniedBy.String(d.DeniedBy))
	}
	if e.Reason != "" {
		attrs = append(attrs, keyRLReason.String(e.Reason))
	}
	span.AddEvent(eventRLDecision, trace.WithAttributes(attrs...))
}
