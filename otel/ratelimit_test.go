package tierotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache/internal/redistest"
	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/ratelimit"
)

func TestRateLimitObserver(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	obs := tierotel.NewRateLimitObserver(tierotel.WithMeterProvider(mp))
	srv := redistest.Start(t)
	policies := []ratelimit.Policy{
		{Name: "roles", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(2, time.Hour)}, Outage: ratelimit.FailClosed},
		{Name: "profile", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(30, time.Minute)}},
	}
	secret := []byte("0123456789abcdef0123")
	l := ratelimit.Must(&ratelimit.Options{Client: srv.Client(t), Policies: policies, ActorSecret: secret, Observer: obs,
		// A loaded machine (cluster tests starting beside this one) can take more
		// than the default 100 ms for one call, which the limiter would decide
		// in its outage mode: this test is about what the observer records.
		Timeout: 5 * time.Second})
	offline := ratelimit.Must(&ratelimit.Options{Policies: policies, ActorSecret: secret, Observer: obs})

	ctx, span := tp.Tracer("app").Start(t.Context(), "POST /roles")
	for range 4 {
		_, err := l.Allow(ctx, "roles", "alice@example.com")
		require.NoError(t, err)
	}
	span.End()
	_, err := offline.Allow(t.Context(), "roles", "alice@example.com")
	require.NoError(t, err)
	_, err = offline.Allow(t.Context(), "profile", "alice@example.com")
	require.NoError(t, err)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	counts := map[string]int64{}
	var histCount uint64
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, tierotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					k := m.Name
					for _, kv := range dp.Attributes.ToSlice() {
						require.NotContains(t, kv.Value.String(), "alice")
						if kv.Key != "ratelimit.policy" {
							k += " " + string(kv.Key) + "=" + kv.Value.String()
						} else {
							k = kv.Value.String() + " " + k
						}
					}
					counts[k] = dp.Value
				}
			case metricdata.Histogram[float64]:
				require.Equal(t, "ratelimit.redis.duration", m.Name)
				for _, dp := range data.DataPoints {
					histCount += dp.Count
				}
			}
		}
	}
	require.Equal(t, map[string]int64{
		"roles ratelimit.decisions ratelimit.result=allowed ratelimit.source=redis":                 2,
		"roles ratelimit.decisions ratelimit.result=denied ratelimit.source=redis":                  1,
		"roles ratelimit.decisions ratelimit.result=denied ratelimit.source=denial_cache":           1,
		"roles ratelimit.decisions ratelimit.result=denied ratelimit.source=fail_closed":            1,
		"roles ratelimit.fallbacks ratelimit.fallback.reason=no_redis ratelimit.source=fail_closed": 1,
		"profile ratelimit.decisions ratelimit.result=allowed ratelimit.source=local":               1,
		"profile ratelimit.fallbacks ratelimit.fallback.reason=no_redis ratelimit.source=local":     1,
	}, counts)
	require.Equal(t, uint64(3), histCount, "one round trip per Redis decision")

	ended := spans.Ended()
	require.Len(t, ended, 1)
	ev := ended[0].Events()
	require.Len(t, ev, 4)
	for _, e := range ev {
		require.Equal(t, "ratelimit.decision", e.Name)
		for _, kv := range e.Attributes {
			require.NotContains(t, kv.Value.String(), "alice")
		}
	}
	require.Contains(t, ev[3].Attributes, attribute.String("ratelimit.source", "denial_cache"))
	require.Contains(t, ev[2].Attributes, attribute.String("ratelimit.denied_by", "roles"))
}
