package tierotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/tier"
)

// telemetry is an SDK tracer and meter provider that keep everything in
// memory, and an Observer that uses them. No global is touched.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	obs    *tierotel.Observer
	ends   chan struct{} // gets a token when a span ends
}

// endNotifier is a span processor that tells the test a span ended.
type endNotifier struct {
	sdktrace.SpanProcessor // no-op for the rest (nil: never called)
	ends                   chan struct{}
}

func (n endNotifier) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (n endNotifier) OnEnd(sdktrace.ReadOnlySpan) {
	select {
	case n.ends <- struct{}{}:
	default:
	}
}
func (n endNotifier) Shutdown(context.Context) error   { return nil }
func (n endNotifier) ForceFlush(context.Context) error { return nil }

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tm := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(), ends: make(chan struct{}, 1)}
	tm.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tm.spans),
		sdktrace.WithSpanProcessor(endNotifier{ends: tm.ends}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tm.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tm.reader))
	t.Cleanup(func() {
		ctx := context.Background()
		require.NoError(t, tm.tp.Shutdown(ctx))
		require.NoError(t, tm.mp.Shutdown(ctx))
	})
	tm.obs = tierotel.New(tierotel.WithTracerProvider(tm.tp), tierotel.WithMeterProvider(tm.mp))
	return tm
}

// request starts a span standing for the application's request, as an HTTP
// server middleware would.
func (tm *telemetry) request(ctx context.Context) (context.Context, trace.Span) {
	return tm.tp.Tracer("app").Start(ctx, "GET /profile")
}

// ended returns the ended spans named name.
func (tm *telemetry) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitEnded waits until n spans named name have ended (work the cache does
// after answering, such as a flight's L2 write).
func (tm *telemetry) waitEnded(t *testing.T, name string, n int) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for len(tm.ended(name)) < n {
		select {
		case <-tm.ends:
		case <-timeout.C:
			t.Fatalf("%d spans named %q ended, want %d", len(tm.ended(name)), name, n)
		}
	}
}

// only returns the one ended span named name.
func (tm *telemetry) only(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	s := tm.ended(name)
	require.Len(t, s, 1, "spans named %q", name)
	return s[0]
}

func (tm *telemetry) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tm.reader.Collect(t.Context(), &rm))
	return rm
}

// metric returns the metric named name from rm.
func metricNamed(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("no metric %q", name)
	return metricdata.Metrics{}
}

// sumOf returns the value of the sum data point of m with exactly attrs.
func sumOf(t *testing.T, m metricdata.Metrics, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	want := attribute.NewSet(attrs...)
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			if dp.Attributes.Equals(&want) {
				return dp.Value
			}
		}
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			if dp.Attributes.Equals(&want) {
				return dp.Value
			}
		}
	default:
		t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	}
	t.Fatalf("%s: no data point with %v", m.Name, want.Encoded(attribute.DefaultEncoder()))
	return 0
}

// histCount returns the count of the histogram data point of m with
// exactly attrs, or 0.
func histCount(t *testing.T, m metricdata.Metrics, attrs ...attribute.KeyValue) uint64 {
	t.Helper()
	want := attribute.NewSet(attrs...)
	d, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s: %T", m.Name, m.Data)
	for _, dp := range d.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Count
		}
	}
	return 0
}

// attrs returns the attributes as a map.
func attrs(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// eventsNamed returns the events of s named name.
func eventsNamed(s sdktrace.ReadOnlySpan, name string) []sdktrace.Event {
	var out []sdktrace.Event
	for _, e := range s.Events() {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// newCache returns a cache closed at the end of the test.
func newCache[V any](t *testing.T, o *tier.Options[V]) *tier.Cache[V] {
	t.Helper()
	if o.L2 != nil && o.L2Timeout == 0 {
		// Generous: with the default 100 ms, a busy machine made New's
		// epoch read time out, and the cache then skipped L2 (a fallback
		// "epoch_unknown" instead of the spans a test expects). A dead
		// server still fails at once: its connections are refused.
		o.L2Timeout = 5 * time.Second
	}
	c, err := tier.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// redisL2 starts a redis-server and returns it with a client that does not
// retry (so a dead server fails a call at once) and an L2 over that client.
func redisL2(t *testing.T) (*redistest.Server, *redis.Client, *goredis.Backend) {
	t.Helper()
	srv := redistest.Start(t)
	o := srv.Options()
	o.MaxRetries = -1
	o.DialTimeout = 200 * time.Millisecond
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	return srv, rdb, goredis.Must(rdb, nil)
}

func constLoad[V any](v V) tier.LoadFunc[V] {
	return func(context.Context, string) (V, error) { return v, nil }
}
