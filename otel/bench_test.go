package tierotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/tier"
)

// discard is a span exporter that drops everything.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// sdkObserver returns an Observer wired to a real SDK: always-on sampler,
// batch span processor to an exporter that drops the spans, and a meter
// provider with a reader (never collected during the run).
func sdkObserver(b *testing.B) *tierotel.Observer {
	b.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return tierotel.New(tierotel.WithTracerProvider(tp), tierotel.WithMeterProvider(mp))
}

type benchProfile struct {
	ID    int64    `msgpack:"id"`
	Name  string   `msgpack:"name"`
	Email string   `msgpack:"email"`
	Bio   string   `msgpack:"bio"`
	Tags  []string `msgpack:"tags"`
}

// BenchmarkObserver measures a read with the Observer on a real SDK against
// the same read with no observer, in the same run. An L1 hit never reaches
// the Observer; an L2 hit (L1 made useless by a 1 ns L1TTL) goes through a
// flight, an l2.get span, a histogram and a miss event.
//
//	go test -run '^$' -bench BenchmarkObserver -count 6 ./otel/
func BenchmarkObserver(b *testing.B) {
	v := &benchProfile{ID: 42, Name: "Ada Lovelace", Email: "ada@example.com", Bio: "Analyst", Tags: []string{"math", "engines"}}
	rdb := redistest.Start(b).Client(b)
	workloads := []struct {
		name string
		opts func(b *testing.B) *tier.Options[*benchProfile]
	}{
		{"tier=l1", func(*testing.B) *tier.Options[*benchProfile] { return &tier.Options[*benchProfile]{} }},
		{"tier=l2", func(b *testing.B) *tier.Options[*benchProfile] {
			return &tier.Options[*benchProfile]{Namespace: "bench", L2: goredis.Must(rdb, nil), L1TTL: time.Nanosecond, Jitter: tier.NoJitter}
		}},
	}
	observers := []struct {
		name string
		obs  func(b *testing.B) tier.Observer
	}{
		{"observer=none", func(*testing.B) tier.Observer { return nil }},
		{"observer=sdk", func(b *testing.B) tier.Observer { return sdkObserver(b) }},
	}
	for _, wl := range workloads {
		b.Run(wl.name, func(b *testing.B) {
			for _, ob := range observers {
				b.Run(ob.name, func(b *testing.B) {
					o := wl.opts(b)
					o.Name = "bench"
					o.Observer = ob.obs(b)
					c, err := tier.New(o)
					require.NoError(b, err)
					b.Cleanup(func() { _ = c.Close() })
					ctx := context.Background()
					require.NoError(b, c.Set(ctx, "user:42", v, 0))
					load := func(context.Context, string) (*benchProfile, error) { return v, nil }
					b.ReportAllocs()
					for b.Loop() {
						got, err := c.GetOrLoad(ctx, "user:42", load)
						if err != nil || got == nil {
							b.Fatal(got, err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkObserverOverhead reports the Observer's overhead as ratios that
// load on the machine cannot skew much: every iteration times a batch of
// reads on a cache without observer, the same batch on a cache with the
// Observer on a real SDK, and again with tier.Options.ObserveRawKeys (which
// spares the cache its keyed hash of each key: that isolates what the hash
// costs), rotating which goes first. It reports ns per read for each
// (none-ns/read, sdk-ns/read, sdk-rawkeys-ns/read) and the ratios sdk/none
// and sdk-rawkeys/none.
//
//	go test -run '^$' -bench BenchmarkObserverOverhead -benchtime 10s ./otel/
func BenchmarkObserverOverhead(b *testing.B) {
	v := &benchProfile{ID: 42, Name: "Ada Lovelace", Email: "ada@example.com", Bio: "Analyst", Tags: []string{"math", "engines"}}
	rdb := redistest.Start(b).Client(b)
	workloads := []struct {
		name  string
		batch int
		opts  func(*redis.Client) *tier.Options[*benchProfile]
	}{
		{"tier=l1", 256, func(*redis.Client) *tier.Options[*benchProfile] { return &tier.Options[*benchProfile]{} }},
		{"tier=l2", 8, func(rdb *redis.Client) *tier.Options[*benchProfile] {
			return &tier.Options[*benchProfile]{Namespace: "bench", L2: goredis.Must(rdb, nil), L1TTL: time.Nanosecond, Jitter: tier.NoJitter}
		}},
	}
	for _, wl := range workloads {
		b.Run(wl.name, func(b *testing.B) {
			ctx := context.Background()
			load := func(context.Context, string) (*benchProfile, error) { return v, nil }
			mk := func(obs tier.Observer, rawKeys bool) *tier.Cache[*benchProfile] {
				o := wl.opts(rdb)
				o.Name = "bench"
				o.Observer = obs
				o.ObserveRawKeys = rawKeys
				c, err := tier.New(o)
				require.NoError(b, err)
				b.Cleanup(func() { _ = c.Close() })
				require.NoError(b, c.Set(ctx, "user:42", v, 0))
				return c
			}
			caches := [...]*tier.Cache[*benchProfile]{mk(nil, false), mk(sdkObserver(b), false), mk(sdkObserver(b), true)}
			var spent [len(caches)]time.Duration
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				for j := range caches {
					i := (j + n) % len(caches)
					c := caches[i]
					t0 := time.Now()
					for range wl.batch {
						if got, err := c.GetOrLoad(ctx, "user:42", load); err != nil || got == nil {
							b.Fatal(got, err)
						}
					}
					spent[i] += time.Since(t0)
				}
				n++
			}
			reads := float64(n * wl.batch)
			var per [len(caches)]float64
			for i := range per {
				per[i] = float64(spent[i].Nanoseconds()) / reads
			}
			b.ReportMetric(per[0], "none-ns/read")
			b.ReportMetric(per[1], "sdk-ns/read")
			b.ReportMetric(per[2], "sdk-rawkeys-ns/read")
			b.ReportMetric(per[1]/per[0], "sdk/none")
			b.ReportMetric(per[2]/per[0], "sdk-rawkeys/none")
		})
	}
}

// BenchmarkObserver_Calls measures the Observer's own work for one read that
// misses L1 and hits L2 (a miss event, then Begin and End of an l2.get), on
// a real SDK, without the cache or Redis around it: with no span in the
// context, and under a request span (started and ended in each iteration,
// so its cost is included).
func BenchmarkObserver_Calls(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	obs := tierotel.New(tierotel.WithTracerProvider(tp),
		tierotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))))
	obs.Attach("bench", func() tier.Stats { return tier.Stats{} })
	call := tier.Call{Cache: "bench", Op: tier.OpL2Get, Key: "0123456789abcdef"}
	read := func(ctx context.Context) {
		obs.Event(ctx, tier.Event{Cache: "bench", Kind: tier.EventMiss, Key: call.Key, Tier: tier.TierL1})
		octx := obs.Begin(ctx, call)
		obs.End(octx, call, tier.Result{Hit: true, Duration: 50 * time.Microsecond})
	}
	b.Run("parent=none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			read(context.Background())
		}
	})
	b.Run("parent=request", func(b *testing.B) {
		tracer := tp.Tracer("app")
		b.ReportAllocs()
		for b.Loop() {
			ctx, span := tracer.Start(context.Background(), "request")
			read(ctx)
			span.End()
		}
	})
}
