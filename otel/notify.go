package tierotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/notify"
)

// The metrics and attributes of notify and counters. No user id, payload,
// dedup key or unique-count member is ever recorded; counters.counter is
// the counter's name, an application constant.
const (
	// Counter of notify events; notify.queue, notify.event, notify.channel
	// (when the event has one), error.type on failures.
	metricNotifyEvents = "tiercache.notify.events"
	// Counter of the notifications those events concern (a sent event
	// counts its digest's notifications); same attributes.
	metricNotifyItems = "tiercache.notify.notifications"
	// Counter of counters events; counters.name, counters.event,
	// counters.counter, error.type on failures.
	metricCountersEvents = "tiercache.counters.events"
	// Counter of the cells (counter buckets, unique members) those events
	// concern; same attributes.
	metricCountersCells = "tiercache.counters.cells"
	// Histogram, seconds, of the flushes' Redis calls; counters.name,
	// counters.event.
	metricCountersDuration = "tiercache.counters.redis.duration"

	keyNotifyQueue   = attribute.Key("notify.queue")
	keyNotifyEvent   = attribute.Key("notify.event")
	keyNotifyChannel = attribute.Key("notify.channel")
	keyNotifyItems   = attribute.Key("notify.items")
	keyCountersName  = attribute.Key("counters.name")
	keyCountersEvent = attribute.Key("counters.event")
	keyCountersCtr   = attribute.Key("counters.counter")
	keyCountersCells = attribute.Key("counters.cells")
)

// NotifyObserver is a notify.Observer that counts what a notify.Queue,
// its Consumers and Outboxes do (tiercache.notify.events, by notify.event:
// enqueued, duplicate, buffered, refused, flushed, sent, send_failed,
// claimed, relayed, unavailable, held; and tiercache.notify.notifications,
// the notifications concerned, so that sent notifications over sent events
// is the digests' mean size) and adds a span event "notify.<event>" with
// notify.queue, notify.channel and notify.items to the span in the
// caller's context. It is safe for concurrent use. Create it with
// [NewNotifyObserver].
type NotifyObserver struct {
	events metric.Int64Counter
	items  metric.Int64Counter
}

var _ notify.Observer = (*NotifyObserver)(nil)

// NewNotifyObserver returns a NotifyObserver whose meter comes from the
// provider in opts (the global one by default); give it to
// notify.Options.Observer. The tracer provider option has no effect:
// events go to the caller's span. Instrument errors go to otel.Handle.
func NewNotifyObserver(opts ...Option) *NotifyObserver {
	in := newInstrumentMaker(opts)
	o := &NotifyObserver{
		events: in.counter(metricNotifyEvents, "{event}",
			"What notification queues and consumers did: enqueues, duplicates, digests sent, reclaims, outages."),
		items: in.counter(metricNotifyItems, "{notification}",
			"Notifications concerned by the notification queues' events."),
	}
	in.done("notify")
	return o
}

// Event implements notify.Observer.
func (o *NotifyObserver) Event(ctx context.Context, e notify.Event) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, keyNotifyQueue.String(e.Queue), keyNotifyEvent.String(e.Kind.String()))
	if e.Channel != "" {
		attrs = append(attrs, keyNotifyChannel.String(string(e.Channel)))
	}
	if e.Err != nil {
		attrs = append(attrs, keyErrorType.String(primitiveErrorType(e.Err)))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	o.events.Add(ctx, 1, set)
	if e.Items > 0 {
		o.items.Add(ctx, int64(e.Items), set)
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent("notify."+e.Kind.String(), trace.WithAttributes(append(attrs, keyNotifyItems.Int(e.Items))...))
}

// CountersObserver is a counters.Observer that counts what counters.Counters
// do (tiercache.counters.events by counters.event: flushed, replayed,
// unavailable, refused; tiercache.counters.cells, the cells concerned),
// times their flushes (tiercache.counters.redis.duration) and adds a span
// event "counters.<event>" to the span in the caller's context. It is safe
// for concurrent use. Create it with [NewCountersObserver].
type CountersObserver struct {
	events   metric.Int64Counter
	cells    metric.Int64Counter
	duration metric.Float64Histogram
}

var _ counters.Observer = (*CountersObserver)(nil)

// NewCountersObserver returns a CountersObserver whose meter comes from
// the provider in opts (the global one by default); give it to
// counters.Options.Observer. Instrument errors go to otel.Handle.
func NewCountersObserver(opts ...Option) *CountersObserver {
	in := newInstrumentMaker(opts)
	o := &CountersObserver{
		events: in.counter(metricCountersEvents, "{event}",
			"What activity counters did: batches flushed, retried batches found applied, outages, refusals."),
		cells: in.counter(metricCountersCells, "{cell}",
			"Counter buckets and unique members concerned by the activity counters' events."),
		duration: in.seconds(metricCountersDuration, "Duration of the activity counters' Redis calls."),
	}
	in.done("counters")
	return o
}

// Event implements counters.Observer.
func (o *CountersObserver) Event(ctx context.Context, e counters.Event) {
	base := []attribute.KeyValue{keyCountersName.String(e.Name), keyCountersEvent.String(e.Kind.String())}
	if e.Duration > 0 {
		o.duration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(base...))
	}
	attrs := base
	if e.Counter != "" {
		attrs = append(attrs, keyCountersCtr.String(e.Counter))
	}
	if e.Err != nil {
		attrs = append(attrs, keyErrorType.String(primitiveErrorType(e.Err)))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	o.events.Add(ctx, 1, set)
	if e.Items > 0 {
		o.cells.Add(ctx, int64(e.Items), set)
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.AddEvent("counters."+e.Kind.String(), trace.WithAttributes(append(attrs, keyCountersCells.Int(e.Items))...))
}

// primitiveErrorType is error.type for the errors of notify and counters:
// a timeout or cancellation first, then the packages' sentinels, then
// errorType's answer.
func primitiveErrorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorType(err)
	case errors.Is(err, notify.ErrBufferFull):
		return "buffer_full"
	case errors.Is(err, counters.ErrFull):
		return "full"
	case errors.Is(err, counters.ErrNotReplicated):
		return "not_replicated"
	case errors.Is(err, notify.ErrUnavailable), errors.Is(err, counters.ErrUnavailable):
		return "unavailable"
	}
	return errorType(err)
}
