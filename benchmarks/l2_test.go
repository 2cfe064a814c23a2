package benchmarks

import (
	"context"
	"testing"
	"time"

	"github.com/go-redis/cache/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
	"github.com/tiercache/tiercache/tier"
)

// BenchmarkL2Hit measures a read that misses L1 and hits Redis. The floor
// is a raw go-redis GET of the msgpack bytes plus msgpack.Unmarshal;
// tiercache is GetOrLoad on a cache whose L1 never stores
// (fixture.NeverLocal), so every call goes to Redis;
// goredis-get-decode-timeoutctx is the floor with a context.WithTimeout per
// GET, a diagnostic of what a fresh cancelable context costs go-redis;
// goredis-get-decode-goroutine is the floor run on a new goroutine that
// the caller waits for, as tiercache runs each flight, a diagnostic of that
// hand-off; go-redis/cache runs
// without its local cache; rueidis is a plain (uncached) Do GET + decode.
func BenchmarkL2Hit(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		b.Run("mode="+mode+"/impl=goredis-get-decode", func(b *testing.B) { benchRawGet(b, mode, 0) })
		b.Run("mode="+mode+"/impl=goredis-get-decode-timeoutctx", func(b *testing.B) { benchRawGet(b, mode, 100*time.Millisecond) })
		b.Run("mode="+mode+"/impl=goredis-get-decode-goroutine", func(b *testing.B) { benchRawGetGoroutine(b, mode) })
		b.Run("mode="+mode+"/impl=tiercache", func(b *testing.B) { benchTiercacheL2(b, mode) })
		b.Run("mode="+mode+"/impl=go-redis-cache", func(b *testing.B) { benchGoRedisCacheL2(b, mode) })
		b.Run("mode="+mode+"/impl=rueidis", func(b *testing.B) { benchRueidisL2(b, mode) })
	}
}

// loop runs get over the hit keys, serially with b.Loop or in parallel.
// Its one indirect call per operation is the same for every contender and
// negligible next to a Redis round trip.
func loop(b *testing.B, mode string, get func(i uint64) *fixture.Profile) {
	b.ReportAllocs()
	if mode == "serial" {
		var i uint64
		for b.Loop() {
			sink = get(i)
			i++
		}
		return
	}
	var off offsets
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := off.next()
		for pb.Next() {
			if p := get(i); p.ID == 0 {
				sink = p
			}
			i++
		}
	})
}

// benchRawGet is the floor; with timeout > 0 each GET runs on its own
// context.WithTimeout, as tiercache's do (a diagnostic, not a floor).
func benchRawGet(b *testing.B, mode string, timeout time.Duration) {
	prefix := namespace("l2hit-raw") + ":"
	keys := hitKeySet()
	storeRaw(b, prefix, keys)
	for i := range keys {
		keys[i] = prefix + keys[i]
	}
	rdb := newRedis(b)
	ctx := context.Background()
	loop(b, mode, func(i uint64) *fixture.Profile {
		gctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			gctx, cancel = context.WithTimeout(ctx, timeout)
		}
		raw, err := rdb.Get(gctx, keys[i%hitKeys]).Bytes()
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		p := new(fixture.Profile)
		if err := msgpack.Unmarshal(raw, p); err != nil {
			b.Fatal(err)
		}
		return p
	})
}

func benchTiercacheL2(b *testing.B, mode string) {
	rdb := newRedis(b)
	c, err := tier.New(&tier.Options[*fixture.Profile]{
		Name:      "profiles",
		Namespace: namespace("l2hit"),
		L1:        fixture.NeverLocal[*fixture.Profile]{},
		L2:        goredis.Must(rdb, nil),
		TTL:       keyTTL,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	keys := hitKeySet()
	for _, k := range keys {
		if err := c.Set(ctx, k, fixture.NewProfile(fixture.ID(k)), keyTTL); err != nil {
			b.Fatal(err)
		}
	}
	before := c.Stats()
	loop(b, mode, func(i uint64) *fixture.Profile {
		p, err := c.GetOrLoad(ctx, keys[i%hitKeys], loadProfile)
		if err != nil {
			b.Fatal(err)
		}
		return p
	})
	b.StopTimer()
	if s := c.Stats(); s.Loads != before.Loads || s.L2Hits == before.L2Hits {
		b.Fatalf("not an L2-hit run: %d loads, %d L2 hits", s.Loads-before.Loads, s.L2Hits-before.L2Hits)
	}
}

func benchGoRedisCacheL2(b *testing.B, mode string) {
	rdb := newRedis(b)
	ns := namespace("l2hit-grc") + ":"
	c := cache.New(&cache.Options{Redis: rdb})
	ctx := context.Background()
	keys := hitKeySet()
	for i := range keys {
		keys[i] = ns + keys[i]
		if err := c.Set(&cache.Item{Ctx: ctx, Key: keys[i], Value: fixture.NewProfile(int64(i + 1)), TTL: keyTTL}); err != nil {
			b.Fatal(err)
		}
	}
	loop(b, mode, func(i uint64) *fixture.Profile {
		p := new(fixture.Profile)
		err := c.Once(&cache.Item{Ctx: ctx, Key: keys[i%hitKeys], Value: p, TTL: keyTTL, Do: func(it *cache.Item) (any, error) {
			b.Fatal("load during an L2-hit benchmark")
			return nil, nil
		}})
		if err != nil {
			b.Fatal(err)
		}
		return p
	})
}

func benchRueidisL2(b *testing.B, mode string) {
	prefix := namespace("l2hit-rueidis") + ":"
	keys := hitKeySet()
	storeRaw(b, prefix, keys)
	for i := range keys {
		keys[i] = prefix + keys[i]
	}
	c := newRueidis(b, 0)
	ctx := context.Background()
	loop(b, mode, func(i uint64) *fixture.Profile {
		raw, err := c.Do(ctx, c.B().Get().Key(keys[i%hitKeys]).Build()).AsBytes()
		if err != nil {
			b.Fatal(err)
		}
		p := new(fixture.Profile)
		if err := msgpack.Unmarshal(raw, p); err != nil {
			b.Fatal(err)
		}
		return p
	})
}

func benchRawGetGoroutine(b *testing.B, mode string) {
	prefix := namespace("l2hit-rawgo") + ":"
	keys := hitKeySet()
	storeRaw(b, prefix, keys)
	for i := range keys {
		keys[i] = prefix + keys[i]
	}
	rdb := newRedis(b)
	ctx := context.Background()
	loop(b, mode, func(i uint64) *fixture.Profile {
		type result struct {
			p   *fixture.Profile
			err error
		}
		done := make(chan result, 1)
		go func() {
			raw, err := rdb.Get(ctx, keys[i%hitKeys]).Bytes()
			if err != nil {
				done <- result{err: err}
				return
			}
			p := new(fixture.Profile)
			err = msgpack.Unmarshal(raw, p)
			done <- result{p, err}
		}()
		r := <-done
		if r.err != nil {
			b.Fatal(r.err)
		}
		return r.p
	})
}
