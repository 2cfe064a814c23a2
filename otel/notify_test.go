package tierotel_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/notify"
	tierotel "github.com/tiercache/tiercache/otel"
)

// sdkProviders returns a meter provider with a manual reader and a tracer
// provider with a span recorder, shut down when the test ends.
func sdkProviders(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider, *tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	return reader, mp, sr, tp
}

// eventSums collects the int64 sums named name by the attribute attr,
// joined with error.type when withErr and present ("unavailable/timeout").
func eventSums(t *testing.T, reader *sdkmetric.ManualReader, name, attr string, withErr bool) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, tierotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := p.Attributes.Value(attribute.Key(attr))
				k := v.AsString()
				if et, ok := p.Attributes.Value("error.type"); ok && withErr {
					k += "/" + et.AsString()
				}
				out[k] += p.Value
			}
		}
	}
	return out
}

func TestNotifyObserver(t *testing.T) {
	t.Parallel()
	reader, mp, sr, tp := sdkProviders(t)
	o := tierotel.NewNotifyObserver(tierotel.WithMeterProvider(mp), tierotel.WithTracerProvider(tp))
	ctx, span := tp.Tracer("test").Start(t.Context(), "POST /bookings")
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventEnqueued, Channel: notify.Email, Items: 1})
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventEnqueued, Channel: notify.Email, Items: 1})
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventDuplicate, Channel: notify.Email, Items: 1})
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventSent, Channel: notify.Email, Items: 2})
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventHeld, Channel: notify.Push, Items: 3})
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventRefused, Channel: notify.SMS, Items: 1,
		Err: fmt.Errorf("%w: %w", notify.ErrBufferFull, notify.ErrUnavailable)})
	o.Event(ctx, notify.Event{Queue: "confirmations", Kind: notify.EventUnavailable, Err: fmt.Errorf("%w: %w", notify.ErrUnavailable, context.DeadlineExceeded)})
	span.End()

	require.Equal(t, map[string]int64{"enqueued": 2, "duplicate": 1, "sent": 1, "held": 1, "refused/buffer_full": 1, "unavailable/timeout": 1},
		eventSums(t, reader, "tiercache.notify.events", "notify.event", true))
	require.Equal(t, map[string]int64{"enqueued": 2, "duplicate": 1, "sent": 2, "held": 3, "refused/buffer_full": 1},
		eventSums(t, reader, "tiercache.notify.notifications", "notify.event", true))
	require.Equal(t, map[string]int64{"email": 4, "push": 1, "sms": 1, "": 1},
		eventSums(t, reader, "tiercache.notify.events", "notify.channel", false))

	evs := sr.Ended()[0].Events()
	require.Len(t, evs, 7)
	require.Equal(t, "notify.sent", evs[3].Name)
	require.Contains(t, evs[3].Attributes, attribute.Int("notify.items", 2))
	require.Contains(t, evs[3].Attributes, attribute.String("notify.channel", "email"))
	require.Contains(t, evs[3].Attributes, attribute.String("notify.queue", "confirmations"))
}

func TestCountersObserver(t *testing.T) {
	t.Parallel()
	reader, mp, sr, tp := sdkProviders(t)
	o := tierotel.NewCountersObserver(tierotel.WithMeterProvider(mp), tierotel.WithTracerProvider(tp))
	ctx, span := tp.Tracer("test").Start(t.Context(), "flush")
	o.Event(ctx, counters.Event{Name: "activity", Kind: counters.EventFlushed, Counter: "bookings", Items: 3, Duration: time.Millisecond})
	o.Event(ctx, counters.Event{Name: "activity", Kind: counters.EventReplayed, Counter: "bookings", Items: 2})
	o.Event(ctx, counters.Event{Name: "activity", Kind: counters.EventUnavailable, Counter: "bookings", Duration: time.Millisecond,
		Err: fmt.Errorf("%w: %w", counters.ErrUnavailable, counters.ErrNotReplicated)})
	o.Event(ctx, counters.Event{Name: "activity", Kind: counters.EventRefused, Counter: "visitors", Items: 1, Err: counters.ErrFull})
	span.End()

	require.Equal(t, map[string]int64{"flushed": 1, "replayed": 1, "unavailable/not_replicated": 1, "refused/full": 1},
		eventSums(t, reader, "tiercache.counters.events", "counters.event", true))
	require.Equal(t, map[string]int64{"flushed": 3, "replayed": 2, "refused/full": 1},
		eventSums(t, reader, "tiercache.counters.cells", "counters.event", true))
	require.Equal(t, map[string]int64{"bookings": 3, "visitors": 1},
		eventSums(t, reader, "tiercache.counters.events", "counters.counter", false))

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	var hist uint64
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "tiercache.counters.redis.duration" {
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				hist += p.Count
			}
		}
	}
	require.Equal(t, uint64(2), hist)

	evs := sr.Ended()[0].Events()
	require.Len(t, evs, 4)
	require.Equal(t, "counters.flushed", evs[0].Name)
	require.Contains(t, evs[0].Attributes, attribute.String("counters.counter", "bookings"))
	require.Contains(t, evs[0].Attributes, attribute.Int("counters.cells", 3))
}
