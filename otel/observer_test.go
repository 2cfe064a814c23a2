package tierotel_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/tier"
)

var hexHash = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestNew_Options(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []tierotel.Option
	}{
		{"none", nil},
		{"nil option", []tierotel.Option{nil}},
		{"nil providers", []tierotel.Option{tierotel.WithTracerProvider(nil), tierotel.WithMeterProvider(nil)}},
		{"noop providers", []tierotel.Option{tierotel.WithTracerProvider(tracenoop.NewTracerProvider()), tierotel.WithMeterProvider(metricnoop.NewMeterProvider())}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obs := tierotel.New(tt.opts...)
			c := newCache(t, &tier.Options[string]{Observer: obs})
			v, err := c.GetOrLoad(t.Context(), "k", constLoad("v"))
			require.NoError(t, err)
			require.Equal(t, "v", v)
		})
	}
}

func TestObserver_Scope(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	c := newCache(t, &tier.Options[string]{Name: "scope", Observer: tm.obs})
	_, err := c.GetOrLoad(t.Context(), "k", constLoad("v"))
	require.NoError(t, err)
	s := tm.only(t, "tiercache load")
	require.Equal(t, tierotel.ScopeName, s.InstrumentationScope().Name)
	require.Equal(t, tierotel.Version, s.InstrumentationScope().Version)
	for _, sm := range tm.collect(t).ScopeMetrics {
		require.Equal(t, tierotel.ScopeName, sm.Scope.Name)
		require.Equal(t, tierotel.Version, sm.Scope.Version)
	}
}

func TestObserver_Load(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	c := newCache(t, &tier.Options[string]{Name: "profiles", Observer: tm.obs})

	ctx, req := tm.request(t.Context())
	v, err := c.GetOrLoad(ctx, "user:42", constLoad("Ada"))
	require.NoError(t, err)
	require.Equal(t, "Ada", v)
	// An L1 hit, or (if it comes before the flight has put the value in L1)
	// a miss that the finished flight answers: either way no new span.
	v, err = c.GetOrLoad(ctx, "user:42", constLoad("Ada"))
	require.NoError(t, err)
	require.Equal(t, "Ada", v)
	req.End()

	load := tm.only(t, "tiercache load")
	require.Equal(t, req.SpanContext().SpanID(), load.Parent().SpanID(), "a child of the caller's span")
	require.Equal(t, trace.SpanKindInternal, load.SpanKind())
	a := attrs(load.Attributes())
	require.Equal(t, "profiles", a["cache.name"])
	require.Equal(t, "origin", a["cache.tier"])
	require.Equal(t, true, a["cache.load.found"])
	require.NotContains(t, a, "cache.hit", "a load is not a cache hit")
	require.Regexp(t, hexHash, a["cache.key.hash"])
	require.Equal(t, codes.Unset, load.Status().Code)
	require.Len(t, tm.spans.Ended(), 2, "the request and one load; the L1 hit is not traced")

	misses := eventsNamed(tm.only(t, "GET /profile"), "cache.miss")
	require.NotEmpty(t, misses)
	nMiss := int64(len(misses))
	ma := attrs(misses[0].Attributes)
	require.Equal(t, "l1", ma["cache.tier"])
	require.Equal(t, a["cache.key.hash"], ma["cache.key.hash"])

	rm := tm.collect(t)
	name := attribute.String("cache.name", "profiles")
	req2 := func(tier, result string, n int64) metricdata.DataPoint[int64] {
		return metricdata.DataPoint[int64]{
			Attributes: attribute.NewSet(name, attribute.String("cache.tier", tier), attribute.String("cache.result", result)),
			Value:      n,
		}
	}
	metricdatatest.AssertEqual(t, metricdata.Metrics{
		Name:        "tiercache.requests",
		Description: "Cache reads by tier and result.",
		Unit:        "{request}",
		Data: metricdata.Sum[int64]{
			Temporality: metricdata.CumulativeTemporality,
			IsMonotonic: true,
			DataPoints: []metricdata.DataPoint[int64]{
				req2("l1", "hit", 2-nMiss), req2("l1", "miss", nMiss),
				req2("l2", "hit", 0), req2("l2", "error", 0),
				req2("origin", "hit", 1), req2("origin", "miss", 0), req2("origin", "error", 0),
			},
		},
	}, metricNamed(t, rm, "tiercache.requests"), metricdatatest.IgnoreTimestamp())
	require.EqualValues(t, 1, histCount(t, metricNamed(t, rm, "tiercache.load.duration"), name, attribute.Bool("cache.load.found", true)))
	require.GreaterOrEqual(t, sumOf(t, metricNamed(t, rm, "tiercache.l1.cost"), name), int64(0)) // the flight may not have filled L1 yet
	require.EqualValues(t, 1, sumOf(t, metricNamed(t, rm, "tiercache.breaker.state"), name, attribute.String("cache.breaker.state", "closed")))
	require.EqualValues(t, 0, sumOf(t, metricNamed(t, rm, "tiercache.breaker.state"), name, attribute.String("cache.breaker.state", "open")))
}

func TestObserver_LoadResults(t *testing.T) {
	t.Parallel()
	errDB := errors.New("db: connection reset")
	tests := []struct {
		name      string
		load      tier.LoadFunc[string]
		hit       bool
		errorType string // "" for no error
		desc      string
		result    string
		panics    bool
	}{
		{name: "found", load: constLoad("v"), hit: true, result: "hit"},
		{name: "not found", load: func(context.Context, string) (string, error) { return "", tier.ErrNotFound }, result: "miss"},
		{name: "error", load: func(context.Context, string) (string, error) { return "", errDB }, errorType: "*errors.errorString", desc: errDB.Error(), result: "error"},
		{name: "timeout", load: func(ctx context.Context, _ string) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		}, errorType: "timeout", desc: context.DeadlineExceeded.Error(), result: "error"},
		{name: "panic", load: func(context.Context, string) (string, error) { panic("boom: secret@example.com") }, errorType: "panic", desc: "tier: loader panicked", result: "error", panics: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tm := newTelemetry(t)
			c := newCache(t, &tier.Options[string]{Name: "c", Observer: tm.obs, LoadTimeout: 20 * time.Millisecond})
			func() {
				if tt.panics {
					defer func() { require.NotNil(t, recover()) }()
				}
				_, _ = c.GetOrLoad(t.Context(), "k", tt.load)
			}()
			s := tm.only(t, "tiercache load")
			a := attrs(s.Attributes())
			require.Equal(t, tt.hit, a["cache.load.found"])
			if tt.errorType == "" {
				require.Equal(t, codes.Unset, s.Status().Code, "a miss is not an error")
				require.NotContains(t, a, "error.type")
			} else {
				require.Equal(t, codes.Error, s.Status().Code)
				require.Equal(t, tt.desc, s.Status().Description)
				require.Equal(t, tt.errorType, a["error.type"])
				require.Empty(t, s.Events(), "errors are not recorded as exception events")
			}
			rm := tm.collect(t)
			name := attribute.String("cache.name", "c")
			require.EqualValues(t, 1, sumOf(t, metricNamed(t, rm, "tiercache.requests"), name,
				attribute.String("cache.tier", "origin"), attribute.String("cache.result", tt.result)))
			hist := []attribute.KeyValue{name, attribute.Bool("cache.load.found", tt.hit)}
			if tt.errorType != "" {
				hist = append(hist, attribute.String("error.type", tt.errorType))
			}
			require.EqualValues(t, 1, histCount(t, metricNamed(t, rm, "tiercache.load.duration"), hist...))
		})
	}
}

func TestObserver_ValueRefused(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	c := newCache(t, &tier.Options[string]{Name: "c", Observer: tm.obs, MaxValueBytes: 64})
	ctx, req := tm.request(t.Context())
	v, err := c.GetOrLoad(ctx, "k", constLoad(string(make([]byte, 1000))))
	require.NoError(t, err)
	require.Len(t, v, 1000)
	require.NoError(t, c.Close()) // waits for the flight, which refuses the value after answering
	req.End()
	ev := eventsNamed(tm.only(t, "GET /profile"), "cache.value_refused")
	require.Len(t, ev, 1)
	require.Equal(t, "value_too_large", attrs(ev[0].Attributes)["error.type"])
	require.EqualValues(t, 1, sumOf(t, metricNamed(t, tm.collect(t), "tiercache.values.refused"), attribute.String("cache.name", "c")))
}

func TestObserver_DropLocal(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	c := newCache(t, &tier.Options[string]{Name: "c", Observer: tm.obs})
	c.DropLocal(t.Context())
	require.EqualValues(t, 1, sumOf(t, metricNamed(t, tm.collect(t), "tiercache.l1.drops"),
		attribute.String("cache.name", "c"), attribute.String("cache.drop.reason", "drop_local")))
}

// TestObserver_SharedName checks that two caches of one name are summed,
// and that two names are kept apart.
func TestObserver_SharedName(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	a1 := newCache(t, &tier.Options[string]{Name: "a", Observer: tm.obs})
	a2 := newCache(t, &tier.Options[string]{Name: "a", Observer: tm.obs})
	b := newCache(t, &tier.Options[string]{Name: "b", Observer: tm.obs})
	for _, c := range []*tier.Cache[string]{a1, a2, b} {
		_, err := c.GetOrLoad(t.Context(), "k", constLoad("v"))
		require.NoError(t, err)
	}
	rm := tm.collect(t)
	req := metricNamed(t, rm, "tiercache.requests")
	miss := []attribute.KeyValue{attribute.String("cache.tier", "l1"), attribute.String("cache.result", "miss")}
	require.EqualValues(t, 2, sumOf(t, req, append(miss, attribute.String("cache.name", "a"))...))
	require.EqualValues(t, 1, sumOf(t, req, append(miss, attribute.String("cache.name", "b"))...))
	require.EqualValues(t, 2, sumOf(t, metricNamed(t, rm, "tiercache.breaker.state"),
		attribute.String("cache.name", "a"), attribute.String("cache.breaker.state", "closed")))
}

func TestObserver_L2(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	_, _, l2 := redisL2(t)
	o := func() *tier.Options[string] {
		return &tier.Options[string]{Namespace: "profiles", L2: l2, Observer: tm.obs, KeyHashSecret: []byte("fleet secret")}
	}
	writer, reader := newCache(t, o()), newCache(t, o()) // two instances sharing Redis

	ctx, req := tm.request(t.Context())
	require.NoError(t, writer.Set(ctx, "user:1", "Ada", 0)) // L2 written before Set returns
	v, err := reader.GetOrLoad(ctx, "user:1", constLoad("wrong"))
	require.NoError(t, err)
	require.Equal(t, "Ada", v)
	require.NoError(t, writer.Delete(ctx, "user:1"))
	_, err = writer.GetOrLoad(ctx, "user:2", constLoad("Bob"))
	require.NoError(t, err)
	req.End()
	tm.waitEnded(t, "tiercache l2.set", 2) // the flight writes L2 after answering

	byHit := map[bool][]map[string]any{}
	for _, s := range tm.ended("tiercache l2.get") {
		a := attrs(s.Attributes())
		require.Equal(t, "l2", a["cache.tier"])
		require.Equal(t, "profiles", a["cache.name"])
		require.Equal(t, codes.Unset, s.Status().Code, "a miss is not an error")
		require.Equal(t, req.SpanContext().TraceID(), s.SpanContext().TraceID())
		byHit[a["cache.hit"].(bool)] = append(byHit[a["cache.hit"].(bool)], a)
	}
	require.Len(t, byHit[true], 1, "the reader's hit")
	require.NotEmpty(t, byHit[false], "the writer's miss of user:2")
	hash := byHit[true][0]["cache.key.hash"]
	require.Regexp(t, hexHash, hash)
	require.Equal(t, hash, attrs(tm.only(t, "tiercache l2.delete").Attributes())["cache.key.hash"],
		"one secret: one hash on every instance")
	sets := tm.ended("tiercache l2.set")
	require.Len(t, sets, 2, "Set, and the flight that loaded user:2")
	require.Equal(t, hash, attrs(sets[0].Attributes())["cache.key.hash"])
	require.NotContains(t, attrs(sets[0].Attributes()), "cache.hit")
	require.Equal(t, attrs(sets[1].Attributes())["cache.key.hash"], attrs(tm.only(t, "tiercache load").Attributes())["cache.key.hash"])

	rm := tm.collect(t)
	name := attribute.String("cache.name", "profiles")
	require.EqualValues(t, 1, sumOf(t, metricNamed(t, rm, "tiercache.requests"), name,
		attribute.String("cache.tier", "l2"), attribute.String("cache.result", "hit")))
	l2d := metricNamed(t, rm, "tiercache.l2.duration")
	require.EqualValues(t, 1, histCount(t, l2d, name, attribute.String("cache.operation", "get"), attribute.Bool("cache.hit", true)))
	require.EqualValues(t, len(byHit[false]), histCount(t, l2d, name, attribute.String("cache.operation", "get"), attribute.Bool("cache.hit", false)))
	require.EqualValues(t, 2, histCount(t, l2d, name, attribute.String("cache.operation", "set")))
	require.EqualValues(t, 1, histCount(t, l2d, name, attribute.String("cache.operation", "delete")))
}

func TestObserver_DecodeError(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	_, rdb, l2 := redisL2(t)
	c := newCache(t, &tier.Options[string]{Namespace: "c", L2: l2, Observer: tm.obs})
	require.NoError(t, rdb.Set(t.Context(), c.Key("k"), "not an envelope", 0).Err())

	ctx, req := tm.request(t.Context())
	v, err := c.GetOrLoad(ctx, "k", constLoad("v"))
	require.NoError(t, err)
	require.Equal(t, "v", v)
	req.End()

	var ev []string
	for _, s := range tm.spans.Ended() {
		for _, e := range s.Events() {
			if e.Name == "cache.decode_error" {
				ev = append(ev, s.Name())
				require.Equal(t, "corrupt", attrs(e.Attributes)["error.type"])
				require.Equal(t, "l2", attrs(e.Attributes)["cache.tier"])
			}
		}
	}
	require.Len(t, ev, 1, "one decode_error event")
	require.Len(t, tm.ended("tiercache l2.delete"), 1, "the bad bytes are deleted")
	require.Len(t, tm.ended("tiercache load"), 1)
	require.EqualValues(t, 1, sumOf(t, metricNamed(t, tm.collect(t), "tiercache.l2.decode_errors"), attribute.String("cache.name", "c")))
}

func TestObserver_Fallback(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	srv, _, l2 := redisL2(t)
	c := newCache(t, &tier.Options[string]{Namespace: "c", L2: l2, Observer: tm.obs, BreakerFailures: 2, BreakerCooldown: time.Hour})
	srv.Kill()

	ctx, req := tm.request(t.Context())
	for _, k := range []string{"a", "b", "c"} { // two L2 failures open the breaker; the third read skips L2
		v, err := c.GetOrLoad(ctx, k, constLoad("v"))
		require.NoError(t, err, "reads fall back to the origin")
		require.Equal(t, "v", v)
	}
	require.ErrorIs(t, c.Delete(ctx, "a"), tier.ErrL2)
	req.End()

	gets := tm.ended("tiercache l2.get")
	require.Len(t, gets, 2)
	for _, s := range gets {
		require.Equal(t, codes.Error, s.Status().Code)
		require.NotEmpty(t, s.Status().Description)
		a := attrs(s.Attributes())
		require.NotEmpty(t, a["error.type"])
		require.Equal(t, false, a["cache.hit"])
		fb := eventsNamed(s, "cache.fallback")
		require.Len(t, fb, 1, "the failed read's span says it fell back")
		fa := attrs(fb[0].Attributes)
		require.Contains(t, []any{string(tier.ReasonL2Error), string(tier.ReasonL2Timeout)}, fa["cache.fallback.reason"])
		require.Equal(t, a["error.type"], fa["error.type"])
	}
	require.Len(t, tm.ended("tiercache load"), 3)
	fb := eventsNamed(tm.only(t, "GET /profile"), "cache.fallback")
	require.Len(t, fb, 1, "the breaker-open fallback is on the caller's span")
	require.Equal(t, string(tier.ReasonBreakerOpen), attrs(fb[0].Attributes)["cache.fallback.reason"])

	rm := tm.collect(t)
	name := attribute.String("cache.name", "c")
	fallbacks := metricNamed(t, rm, "tiercache.fallbacks")
	var l2Failures int64
	for _, dp := range fallbacks.Data.(metricdata.Sum[int64]).DataPoints {
		if r, _ := dp.Attributes.Value("cache.fallback.reason"); r.AsString() != string(tier.ReasonBreakerOpen) {
			l2Failures += dp.Value
		}
	}
	require.EqualValues(t, 2, l2Failures)
	require.EqualValues(t, 1, sumOf(t, fallbacks, name, attribute.String("cache.fallback.reason", string(tier.ReasonBreakerOpen))))
	require.EqualValues(t, 2, sumOf(t, metricNamed(t, rm, "tiercache.requests"), name,
		attribute.String("cache.tier", "l2"), attribute.String("cache.result", "error")))
	state := metricNamed(t, rm, "tiercache.breaker.state")
	require.EqualValues(t, 1, sumOf(t, state, name, attribute.String("cache.breaker.state", "open")))
	require.EqualValues(t, 0, sumOf(t, state, name, attribute.String("cache.breaker.state", "closed")))
	require.EqualValues(t, 1, sumOf(t, metricNamed(t, rm, "tiercache.breaker.opens"), name))
}

// InvalidateAll and InvalidateTags have spans of their own (no key-less
// "l2.set"), and the observable counters keep their values after Close.
func TestObserver_KeylessOpsAndClose(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	_, _, l2 := redisL2(t)
	c, err := tier.New(&tier.Options[string]{Namespace: "c", L2: l2, Observer: tm.obs, L2Timeout: 5 * time.Second})
	require.NoError(t, err)
	ctx := t.Context()
	_, err = c.GetOrLoad(ctx, "k", constLoad("v"))
	require.NoError(t, err)
	tm.waitEnded(t, "tiercache l2.set", 1) // the flight's L2 write
	require.Eventually(t, func() bool { _, ok := c.GetIfPresent("k"); return ok }, 5*time.Second, time.Millisecond)

	require.NoError(t, c.InvalidateTags(ctx, "expert:1"))
	require.NoError(t, c.InvalidateAll(ctx))
	for name, n := range map[string]int{"tiercache l2.epoch": 1, "tiercache l2.tags": 1} {
		spans := tm.ended(name)
		require.Len(t, spans, n, name)
		a := attrs(spans[0].Attributes())
		require.Equal(t, "l2", a["cache.tier"])
		require.NotContains(t, a, "cache.key.hash", "%s has no key", name)
	}
	for _, s := range tm.ended("tiercache l2.set") {
		require.Contains(t, attrs(s.Attributes()), "cache.key.hash", "every l2.set names its key")
	}
	rm := tm.collect(t)
	l2d := metricNamed(t, rm, "tiercache.l2.duration")
	name := attribute.String("cache.name", "c")
	require.EqualValues(t, 1, histCount(t, l2d, name, attribute.String("cache.operation", "epoch")))
	require.EqualValues(t, 1, histCount(t, l2d, name, attribute.String("cache.operation", "tags")))

	hits := func(rm metricdata.ResourceMetrics) int64 {
		return sumOf(t, metricNamed(t, rm, "tiercache.requests"), name,
			attribute.String("cache.tier", "l1"), attribute.String("cache.result", "hit"))
	}
	before := hits(rm)
	require.Positive(t, before)
	require.NoError(t, c.Close())
	require.Equal(t, before, hits(tm.collect(t)), "a closed cache's counters keep their last values")
}
