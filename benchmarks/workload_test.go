package benchmarks

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/benchmarks/internal/contender"
	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
	"github.com/tiercache/tiercache/benchmarks/internal/latency"
	"github.com/tiercache/tiercache/benchmarks/internal/redisproc"
)

// keySeq numbers the keys that must be new to every cache (misses).
var keySeq atomic.Int64

// freshKey returns a key no cache has seen, for profile id.
func freshKey(id int64) string {
	return "m" + strconv.FormatInt(keySeq.Add(1), 36) + ":user:" + strconv.FormatInt(id, 10)
}

// newContender builds contender name for this run, closed when b ends.
func newContender(b *testing.B, name string, cfg contender.Config) contender.Contender {
	b.Helper()
	if cfg.RedisAddr == "" {
		cfg.RedisAddr = redisAddr(b)
	}
	if cfg.TTL == 0 {
		cfg.TTL = keyTTL
	}
	c, err := contender.New(name, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkMissLoad measures a read of a key that no tier holds: the
// library goes to PostgreSQL (SELECT by primary key), caches the row in
// Redis and in process, and returns it. The floor is the bare SELECT;
// redis-get+postgres-select (one GET that misses, then the SELECT) is the
// least a read-through miss can cost with the L2 write off the caller's
// path.
func BenchmarkMissLoad(b *testing.B) {
	b.Run("impl=postgres-select", func(b *testing.B) {
		t := table(b)
		ctx := context.Background()
		b.ReportAllocs()
		var i int64
		for b.Loop() {
			p, err := t.Get(ctx, i%t.Rows()+1)
			if err != nil {
				b.Fatal(err)
			}
			sink = p
			i++
		}
	})
	b.Run("impl=redis-get+postgres-select", func(b *testing.B) {
		// The least a read-through miss can cost on the caller's path with
		// the L2 write off it: one Redis GET (a miss), then the SELECT.
		t := table(b)
		rdb := newRedis(b)
		prefix := namespace("miss-floor") + ":"
		ctx := context.Background()
		b.ReportAllocs()
		var i int64
		for b.Loop() {
			id := i%t.Rows() + 1
			if err := rdb.Get(ctx, prefix+freshKey(id)).Err(); !errors.Is(err, redis.Nil) {
				b.Fatalf("GET of a fresh key: %v", err)
			}
			p, err := t.Get(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			sink = p
			i++
		}
	})
	for _, name := range contender.Names {
		b.Run("impl="+name, func(b *testing.B) {
			t := table(b)
			origin := contender.NewCountingOrigin(t.Get)
			c := newContender(b, name, contender.Config{
				Namespace: namespace("miss-" + name),
				L1Entries: 10000,
				Origin:    origin.Load,
			})
			ctx := context.Background()
			b.ReportAllocs()
			var i int64
			for b.Loop() {
				id := i%t.Rows() + 1
				p, err := c.Get(ctx, freshKey(id), id)
				if err != nil {
					b.Fatal(err)
				}
				sink = p
				i++
			}
			b.StopTimer()
			if n := origin.Calls(); n < int64(b.N) {
				b.Fatalf("%d loads for %d misses", n, b.N)
			}
		})
	}
}

// stampedeCallers is how many goroutines read the cold key on each of the
// two instances.
const stampedeCallers = 1000

// BenchmarkStampede makes 1000 callers on each of two instances (two
// caches sharing one Redis) read the same cold key at once, from an origin
// that takes 10 ms, and counts the origin loads (loads/op; the target is 1).
func BenchmarkStampede(b *testing.B) {
	for _, name := range contender.Names {
		b.Run("impl="+name, func(b *testing.B) {
			origin := contender.NewCountingOrigin(contender.MemoryOrigin(10 * time.Millisecond))
			cfg := contender.Config{Namespace: namespace("stampede-" + name), L1Entries: 10000, Origin: origin.Load}
			insts := []contender.Contender{newContender(b, name, cfg), newContender(b, name, cfg)}
			ctx := context.Background()
			var failed atomic.Int64
			var id int64
			for b.Loop() {
				id++
				key := freshKey(id)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for _, c := range insts {
					for range stampedeCallers {
						wg.Go(func() {
							<-start
							if p, err := c.Get(ctx, key, id); err != nil || p.ID != id {
								failed.Add(1)
							}
						})
					}
				}
				close(start)
				wg.Wait()
			}
			b.StopTimer()
			if n := failed.Load(); n != 0 {
				b.Fatalf("%d callers failed", n)
			}
			b.ReportMetric(float64(origin.Calls())/float64(b.N), "loads/op")
		})
	}
}

// requestDeadline is the deadline of each read in BenchmarkRedisDown, as an
// application's request would set one: with Redis down, go-redis (its
// dialer retries) and rueidis (it retries until the deadline) block for as
// long as the context lets them.
const requestDeadline = time.Second

// BenchmarkRedisDown reads through each library, with the libraries' default
// Redis client options, while its Redis has been killed (connections reset,
// port closed); local tiers are off, so every read needs PostgreSQL. It
// reports latency percentiles (p50-us, p99-us) against the bare SELECT's,
// and the share of reads that failed (errors/op) under a 1 s deadline.
func BenchmarkRedisDown(b *testing.B) {
	b.Run("impl=postgres-select", func(b *testing.B) {
		t := table(b)
		ctx := context.Background()
		var rec latency.Recorder
		sh := rec.Shard()
		var i int64
		for b.Loop() {
			t0 := time.Now()
			rctx, cancel := context.WithTimeout(ctx, requestDeadline)
			if _, err := t.Get(rctx, i%t.Rows()+1); err != nil {
				b.Fatal(err)
			}
			cancel()
			sh.Add(time.Since(t0))
			i++
		}
		reportLatency(b, rec.Summary())
		b.ReportMetric(0, "errors/op")
	})
	for _, name := range contender.Names {
		b.Run("impl="+name, func(b *testing.B) {
			t := table(b)
			srv, err := redisproc.StartOwned()
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			c := newContender(b, name, contender.Config{
				RedisAddr: srv.Addr(),
				Namespace: namespace("down-" + name),
				Origin:    t.Get,
			})
			ctx := context.Background()
			if _, err := c.Get(ctx, fixture.Key(1), 1); err != nil { // connect while up
				b.Fatal(err)
			}
			if err := srv.Kill(); err != nil {
				b.Fatal(err)
			}
			var rec latency.Recorder
			sh := rec.Shard()
			var errs int
			i := int64(1) // not the key read above, whose flight may linger
			for b.Loop() {
				id := i%t.Rows() + 1
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, requestDeadline)
				if _, err := c.Get(rctx, fixture.Key(id), id); err != nil {
					errs++
				}
				cancel()
				sh.Add(time.Since(t0))
				i++
			}
			reportLatency(b, rec.Summary())
			b.ReportMetric(float64(errs)/float64(b.N), "errors/op")
		})
	}
}

func reportLatency(b *testing.B, s latency.Summary) {
	b.ReportMetric(float64(s.P50.Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(s.P99.Nanoseconds())/1e3, "p99-us")
}
