package tierotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/onetime"
	tierotel "github.com/tiercache/tiercache/otel"
)

func TestIdempotencyObserver(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	o := tierotel.NewIdempotencyObserver(tierotel.WithMeterProvider(mp), tierotel.WithTracerProvider(tp))
	ctx, span := tp.Tracer("test").Start(t.Context(), "POST /book")
	o.Event(ctx, idempotency.Event{Store: "payments", Kind: idempotency.EventAcquired, Record: "0123456789abcdef", Fence: 42, Duration: time.Millisecond})
	o.Event(ctx, idempotency.Event{Store: "payments", Kind: idempotency.EventInFlight, Record: "0123456789abcdef", Duration: time.Millisecond})
	o.Event(ctx, idempotency.Event{Store: "payments", Kind: idempotency.EventReplayed, Record: "0123456789abcdef", FromL1: true})
	o.Event(ctx, idempotency.Event{Store: "payments", Kind: idempotency.EventUnavailable, Err: context.DeadlineExceeded})
	span.End()

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	counts := map[string]int64{}
	var hist uint64
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, tierotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				require.Equal(t, "tiercache.idempotency.events", m.Name)
				for _, p := range d.DataPoints {
					ev, _ := p.Attributes.Value("idempotency.event")
					st, _ := p.Attributes.Value("idempotency.store")
					require.Equal(t, "payments", st.AsString())
					counts[ev.AsString()] += p.Value
					if ev.AsString() == "unavailable" {
						et, _ := p.Attributes.Value("error.type")
						require.Equal(t, "timeout", et.AsString())
					}
				}
			case metricdata.Histogram[float64]:
				require.Equal(t, "tiercache.idempotency.redis.duration", m.Name)
				for _, p := range d.DataPoints {
					hist += p.Count
				}
			}
		}
	}
	require.Equal(t, map[string]int64{"acquired": 1, "in_flight": 1, "replayed": 1, "unavailable": 1}, counts)
	require.Equal(t, uint64(2), hist)

	spans := sr.Ended()
	require.Len(t, spans, 1)
	evs := spans[0].Events()
	require.Len(t, evs, 4)
	require.Equal(t, "idempotency.acquired", evs[0].Name)
	require.Contains(t, evs[0].Attributes, attribute.Int64("idempotency.fence", 42))
	require.Contains(t, evs[0].Attributes, attribute.String("idempotency.record", "0123456789abcdef"))
	require.Contains(t, evs[2].Attributes, attribute.Bool("idempotency.from_l1", true))
}

func TestOneTimeObserver(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	o := tierotel.NewOneTimeObserver(tierotel.WithMeterProvider(mp), tierotel.WithTracerProvider(tp))
	ctx, span := tp.Tracer("test").Start(t.Context(), "POST /verify")
	o.Event(ctx, onetime.Event{Store: "auth", Kind: onetime.EventWrongCode, Purpose: "verify-phone"})
	o.Event(ctx, onetime.Event{Store: "auth", Kind: onetime.EventConsumed, Purpose: "verify-phone"})
	o.Event(ctx, onetime.Event{Store: "auth", Kind: onetime.EventUnavailable, Purpose: "verify-phone", Err: errors.New("x")})
	span.End()

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	require.Len(t, rm.ScopeMetrics[0].Metrics, 1)
	sum := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64])
	require.Len(t, sum.DataPoints, 3)
	for _, p := range sum.DataPoints {
		pu, _ := p.Attributes.Value("onetime.purpose")
		require.Equal(t, "verify-phone", pu.AsString())
	}
	evs := sr.Ended()[0].Events()
	require.Equal(t, "onetime.wrong_code", evs[0].Name)
	require.Equal(t, "onetime.consumed", evs[1].Name)
}
