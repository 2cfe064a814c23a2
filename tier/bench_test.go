package tier_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	dristretto "github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// BenchmarkL1Hit compares an L1 hit with its floor, a raw ristretto Get of
// a stored pointer in the same configuration as tier's default L1. The
// cross-peer comparison lives in the benchmarks module.
func BenchmarkL1Hit(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	b.Run("impl=ristretto", func(b *testing.B) {
		r, err := dristretto.NewCache(&dristretto.Config[string, *profile]{NumCounters: 1 << 16, MaxCost: 64 << 20, BufferItems: 64, Metrics: true, IgnoreInternalCost: true})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		for _, k := range keys {
			r.Set(k, &profile{Name: k}, 1)
		}
		r.Wait()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := r.Get(keys[i&1023]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("impl=tiercache", func(b *testing.B) {
		c := tier.Must(&tier.Options[*profile]{})
		defer c.Close()
		ctx := context.Background()
		load := func(_ context.Context, k string) (*profile, error) { return &profile{Name: k}, nil }
		for _, k := range keys {
			if _, err := c.GetOrLoad(ctx, k, load); err != nil {
				b.Fatal(err)
			}
		}
		for _, k := range keys { // wait until every value is visible in L1
			for {
				if _, ok := c.GetIfPresent(k); ok {
					break
				}
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := c.GetOrLoad(ctx, keys[i&1023], load); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkCache_L2Down measures how long a read waits when L2 does not
// answer: Redis killed (connections refused) or stopped (SIGSTOP: nothing
// answers, the read waits out L2Timeout). Each read misses L1 (a new key),
// tries L2 (the breaker is kept closed so that every read does) and falls
// back to an instant origin. The promise is about L2Timeout plus the
// origin's time; the unit tests log these figures but do not assert them,
// as on a busy machine they measure the scheduler too:
//
//	go test -run '^$' -bench 'Cache_L2Down' -benchtime 200x ./tier
//
// Besides ns/op (the mean), it reports the median, p99 and maximum in ms.
func BenchmarkCache_L2Down(b *testing.B) {
	const l2Timeout = 50 * time.Millisecond
	for _, mode := range []string{"killed", "stopped"} {
		b.Run("redis="+mode, func(b *testing.B) {
			srv := redistest.Start(b)
			o := srv.Options()
			o.ContextTimeoutEnabled = true
			o.MaxRetries = -1
			rdb := redis.NewClient(o)
			b.Cleanup(func() { _ = rdb.Close() })
			c, err := tier.New(&tier.Options[string]{
				Namespace: "bench-l2down-" + mode, L2: goredis.Must(rdb, nil),
				L2Timeout: l2Timeout, BreakerFailures: 1 << 30,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			ctx := context.Background()
			load := func(_ context.Context, k string) (string, error) { return k, nil }
			if _, err := c.GetOrLoad(ctx, "warm", load); err != nil { // the pool has a connection
				b.Fatal(err)
			}
			if mode == "killed" {
				srv.Kill()
			} else {
				srv.Pause()
				b.Cleanup(srv.Resume)
			}
			var d []time.Duration
			i := 0
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.GetOrLoad(ctx, "k"+strconv.Itoa(i), load); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(t0))
				i++
			}
			slices.Sort(d)
			ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
			b.ReportMetric(ms(d[len(d)/2]), "p50-ms")
			b.ReportMetric(ms(d[min(len(d)-1, len(d)*99/100)]), "p99-ms")
			b.ReportMetric(ms(d[len(d)-1]), "max-ms")
		})
	}
}
