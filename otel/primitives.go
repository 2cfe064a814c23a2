package tierotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/onetime"
)

// The metrics and attributes of the primitives beside the cache. Keys,
// tokens, codes and subjects are never recorded: an idempotency record is
// named by 16 hex digits of its hash, a token only by its purpose (one of
// the application's constants).
const (
	// Counter of idempotency events; idempotency.store, idempotency.event,
	// error.type on failures.
	metricIdemEvents = "tiercache.idempotency.events"
	// Histogram, seconds, of the Redis calls behind the events;
	// idempotency.store, idempotency.event.
	metricIdemDuration = "tiercache.idempotency.redis.duration"
	// Counter of one-time token and code events; onetime.store,
	// onetime.purpose, onetime.event.
	metricOneTimeEvents = "tiercache.onetime.events"

	keyIdemStore   = attribute.Key("idempotency.store")
	keyIdemEvent   = attribute.Key("idempotency.event")
	keyIdemRecord  = attribute.Key("idempotency.record")
	keyIdemFence   = attribute.Key("idempotency.fence")
	keyIdemFromL1  = attribute.Key("idempotency.from_l1")
	keyOTStore     = attribute.Key("onetime.store")
	keyOTPurpose   = attribute.Key("onetime.purpose")
	keyOTEventKind = attribute.Key("onetime.event")
)

// IdempotencyObserver is an idempotency.Observer that counts what an
// idempotency.Store does (tiercache.idempotency.events, by
// idempotency.event: acquired, taken_over, in_flight, replayed, mismatch,
// completed, failed, lease_lost, unavailable, fail_open, complete_deferred,
// complete_dropped, recreated, corrupt), times its Redis calls
// (tiercache.idempotency.redis.duration) and adds a span event
// "idempotency.<event>" to the span of the request, with
// idempotency.record (a hash, never the key), idempotency.fence and
// idempotency.from_l1. It is safe for concurrent use. Create it with
// [NewIdempotencyObserver].
type IdempotencyObserver struct {
	events   metric.Int64Counter
	duration metric.Float64Histogram
}

var _ idempotency.Observer = (*IdempotencyObserver)(nil)

// NewIdempotencyObserver returns an IdempotencyObserver whose meter comes
// from the provider in opts (the global one by default); give it to
// idempotency.Options.Observer. Instrument errors go to otel.Handle.
func NewIdempotencyObserver(opts ...Option) *IdempotencyObserver {
	in := newInstrumentMaker(opts)
	o := &IdempotencyObserver{
		events: in.counter(metricIdemEvents, "{event}",
			"What idempotency stores did: attempts started, replays, conflicts, completions, failures."),
		duration: in.seconds(metricIdemDuration, "Duration of the Redis calls of idempotency stores."),
	}
	in.done("idempotency")
	return o
}

// Event implements idempotency.Observer.
func (o *IdempotencyObserver) Event(ctx context.Context, e idempotency.Event) {
	attrs := []attribute.KeyValue{keyIdemStore.String(e.Store), keyIdemEvent.String(e.Kind.String())}
	if e.Duration > 0 {
		o.duration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(attrs...))
	}
	if e.Err != nil {
		attrs = append(attrs, keyErrorType.String(errorType(e.Err)))
	}
	o.events.Add(ctx, 1, metric.WithAttributes(attrs...))
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	ev := []attribute.KeyValue{keyIdemStore.String(e.Store)}
	if e.Record != "" {
		ev = append(ev, keyIdemRecord.String(e.Record))
	}
	if e.Fence != 0 {
		ev = append(ev, keyIdemFence.Int64(e.Fence))
	}
	if e.Kind == idempotency.EventReplayed {
		ev = append(ev, keyIdemFromL1.Bool(e.FromL1))
	}
	if e.Err != nil {
		ev = append(ev, keyErrorType.String(errorType(e.Err)))
	}
	span.AddEvent("idempotency."+e.Kind.String(), trace.WithAttributes(ev...))
}

// OneTimeObserver is a onetime.Observer that counts what onetime stores
// and temp data do (tiercache.onetime.events, by onetime.purpose and
// onetime.event: minted, consumed, expired_or_used, wrong_subject,
// wrong_code, locked, unavailable, corrupt) and adds a span event
// "onetime.<event>" with onetime.purpose to the span of the request. No
// token, code, subject or id is ever recorded. It is safe for concurrent
// use. Create it with [NewOneTimeObserver].
type OneTimeObserver struct {
	events metric.Int64Counter
}

var _ onetime.Observer = (*OneTimeObserver)(nil)

// NewOneTimeObserver returns a OneTimeObserver whose meter comes from the
// provider in opts (the global one by default); give it to
// onetime.Options.Observer and onetime.TempDataOptions.Observer.
func NewOneTimeObserver(opts ...Option) *OneTimeObserver {
	in := newInstrumentMaker(opts)
	o := &OneTimeObserver{events: in.counter(metricOneTimeEvents, "{event}",
		"What one-time token stores did: tokens and codes minted, consumed, refused.")}
	in.done("onetime")
	return o
}

// Event implements onetime.Observer.
func (o *OneTimeObserver) Event(ctx context.Context, e onetime.Event) {
	attrs := []attribute.KeyValue{keyOTStore.String(e.Store), keyOTPurpose.String(e.Purpose), keyOTEventKind.String(e.Kind.String())}
	if e.Err != nil {
		attrs = append(attrs, keyErrorType.String(errorType(e.Err)))
	}
	o.events.Add(ctx, 1, metric.WithAttributes(attrs...))
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent("onetime."+e.Kind.String(), trace.WithAttributes(attrs[:2]...))
}
