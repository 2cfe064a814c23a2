package tierotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	// Only the event types: not package session, which imports go-redis.
	"github.com/tiercache/tiercache/session/sessionevent"
)

// The session manager's metrics and attributes. A user appears only as
// their keyed hash (session.user.hash, the hash tag of their Redis keys)
// and a session only as its ref (a keyed hash of its token), and only on
// span events; no metric carries either. The user as the application gave
// it, the device and the addresses of an event are never recorded.
const (
	// Counter of events; session.event, with session.reason (revoked),
	// session.fallback.op and session.fallback.reason (fallback), error.type
	// (fallback with an error).
	metricSessEvents = "tiercache.session.events"
	// Counter of sessions ended; session.reason (revoke, revoke_all,
	// revoke_others, evicted).
	metricSessRevoked = "tiercache.session.revoked"
	// Histogram, seconds, of the Redis calls that failed into a fallback;
	// session.fallback.op, session.fallback.reason.
	metricSessFallbackDuration = "tiercache.session.fallback.duration"

	keySessEvent    = attribute.Key("session.event")
	keySessReason   = attribute.Key("session.reason")
	keySessOp       = attribute.Key("session.fallback.op")
	keySessFBReason = attribute.Key("session.fallback.reason")
	keySessUser     = attribute.Key("session.user.hash")
	keySessRef      = attribute.Key("session.ref")
	keySessOldRef   = attribute.Key("session.old_ref")
	keySessCount    = attribute.Key("session.count")
)

// SessionObserver is a session.Observer (sessionevent.Observer) that
// counts what a session.Manager reports as OpenTelemetry metrics and adds
// a "session.<event>" event to the span in the caller's context (no span
// of its own). Give it to session.Options.Observer; one SessionObserver
// may serve many Managers. It is safe for concurrent use. Create it with
// [NewSessionObserver].
//
//	tiercache.session.events             counter    session.event (created, renewed, revoked, new_device, new_ip, fallback),
//	                                                session.reason, session.fallback.op, session.fallback.reason, error.type
//	tiercache.session.revoked            counter    session.reason: sessions ended
//	tiercache.session.fallback.duration  histogram  s, session.fallback.op, session.fallback.reason
//
// Reads are not events (a read served from L1 must cost nothing here):
// the Manager's L1 is a tier.Cache named "session", so an [Observer] given
// to session.Options.CacheObserver counts its reads, hits and loads as
// tiercache.requests{cache.name="session"}; session.Manager.Stats has the
// rest.
type SessionObserver struct {
	events   metric.Int64Counter
	revoked  metric.Int64Counter
	duration metric.Float64Histogram

	attrs attrSets[sessAttrKey]
}

var _ sessionevent.Observer = (*SessionObserver)(nil)

// NewSessionObserver returns a SessionObserver that takes its meter from
// the provider in opts (the global one by default); the tracer provider
// option has no effect, events go to the caller's span. Errors creating
// instruments go to otel.Handle; the observer works without those
// instruments.
func NewSessionObserver(opts ...Option) *SessionObserver {
	in := newInstrumentMaker(opts)
	o := &SessionObserver{
		events: in.counter(metricSessEvents, "{event}",
			"What session managers did: sessions created, renewed, revoked, new devices and addresses, fallbacks."),
		revoked: in.counter(metricSessRevoked, "{session}", "Sessions ended by session managers, by reason."),
		duration: in.seconds(metricSessFallbackDuration,
			"Duration of the Redis calls of session managers that failed into a fallback."),
	}
	in.done("session")
	return o
}

// sessAttrKey names one attribute set.
type sessAttrKey struct {
	kind      uint8 // 0 events, 1 revoked, 2 duration
	event     sessionevent.EventKind
	reason    string
	op        string
	errorType string
}

func sessAttrs(k sessAttrKey) []attribute.KeyValue {
	var kvs []attribute.KeyValue
	switch k.kind {
	case 0:
		kvs = append(kvs, keySessEvent.String(k.event.String()))
		switch k.event {
		case sessionevent.EventRevoked:
			kvs = append(kvs, keySessReason.String(k.reason))
		case sessionevent.EventFallback:
			kvs = append(kvs, keySessOp.String(k.op), keySessFBReason.String(k.reason))
		}
		if k.errorType != "" {
			kvs = append(kvs, keyErrorType.String(k.errorType))
		}
	case 1:
		kvs = append(kvs, keySessReason.String(k.reason))
	case 2:
		kvs = append(kvs, keySessOp.String(k.op), keySessFBReason.String(k.reason))
	}
	return kvs
}

// Event implements session.Observer.
func (o *SessionObserver) Event(ctx context.Context, e sessionevent.Event) {
	k := sessAttrKey{event: e.Kind}
	switch e.Kind {
	case sessionevent.EventRevoked:
		k.reason = e.Reason
	case sessionevent.EventFallback:
		k.reason, k.op = e.Reason, e.Op
	}
	if e.Err != nil {
		k.errorType = errorType(e.Err)
	}
	o.events.Add(ctx, 1, o.attrs.get(k, sessAttrs))
	if e.Kind == sessionevent.EventRevoked && e.Count > 0 {
		o.revoked.Add(ctx, int64(e.Count), o.attrs.get(sessAttrKey{kind: 1, reason: e.Reason}, sessAttrs))
	}
	if e.Kind == sessionevent.EventFallback && e.Duration > 0 {
		o.duration.Record(ctx, e.Duration.Seconds(), o.attrs.get(sessAttrKey{kind: 2, reason: e.Reason, op: e.Op}, sessAttrs))
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	if e.UserTag != "" {
		attrs = append(attrs, keySessUser.String(e.UserTag))
	}
	if e.Ref != "" {
		attrs = append(attrs, keySessRef.String(e.Ref))
	}
	if e.OldRef != "" {
		attrs = append(attrs, keySessOldRef.String(e.OldRef))
	}
	switch e.Kind {
	case sessionevent.EventRevoked:
		attrs = append(attrs, keySessCount.Int(e.Count), keySessReason.String(e.Reason))
	case sessionevent.EventFallback:
		attrs = append(attrs, keySessOp.String(e.Op), keySessFBReason.String(e.Reason))
	}
	if k.errorType != "" {
		attrs = append(attrs, keyErrorType.String(k.errorType))
	}
	span.AddEvent("session."+e.Kind.String(), trace.WithAttributes(attrs...))
}
