package benchmarks

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/go-redis/cache/v9"
	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tiercache/tiercache/backends/goredis"
	tcristretto "github.com/tiercache/tiercache/backends/ristretto"
	"github.com/tiercache/tiercache/benchmarks/internal/contender"
	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
	"github.com/tiercache/tiercache/tier"
)

// hitKeys is how many keys the hit benchmarks cycle through: all fit in
// every L1, and parallel goroutines rarely read the same key at once.
const hitKeys = 1024

// sink keeps results alive. Parallel loops store into it only on a branch
// never taken, so that goroutines do not race on it.
var sink *fixture.Profile

// hitKeySet returns the keys of the hit benchmarks.
func hitKeySet() []string {
	keys := make([]string, hitKeys)
	for i := range keys {
		keys[i] = fixture.Key(int64(i + 1))
	}
	return keys
}

func loadProfile(_ context.Context, key string) (*fixture.Profile, error) {
	return fixture.NewProfile(fixture.ID(key)), nil
}

// offsets hands each RunParallel goroutine its own starting key.
type offsets struct{ n atomic.Uint64 }

func (o *offsets) next() uint64 { return o.n.Add(hitKeys / 8) }

// BenchmarkL1Hit measures a read answered by the in-process tier. The floors
// are raw ristretto v2 Gets of a stored *Profile, in the configuration of
// tiercache's default L1 (backends/ristretto defaults: Metrics on,
// IgnoreInternalCost, no ristretto TTL since tier checks expiry itself) and
// with Metrics off; ristretto-metrics-ttl stores with a TTL, so that Get
// reads the clock to check expiry (a diagnostic: what tiercache's L1 cost
// before it dropped the ristretto TTL); tiercache is GetOrLoad on a warm key
// (its default ristretto L1 over Redis); the peers are go-redis/cache
// (TinyLFU + Redis) and rueidis DoCache, both of which decode the cached
// bytes on every hit.
func BenchmarkL1Hit(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		b.Run("mode="+mode+"/impl=ristretto-metrics", func(b *testing.B) { benchRistretto(b, mode, true, 0) })
		b.Run("mode="+mode+"/impl=ristretto-nometrics", func(b *testing.B) { benchRistretto(b, mode, false, 0) })
		b.Run("mode="+mode+"/impl=ristretto-metrics-ttl", func(b *testing.B) { benchRistretto(b, mode, true, keyTTL) })
		b.Run("mode="+mode+"/impl=tiercache", func(b *testing.B) { benchTiercacheL1(b, mode) })
		b.Run("mode="+mode+"/impl=go-redis-cache", func(b *testing.B) { benchGoRedisCacheL1(b, mode) })
		b.Run("mode="+mode+"/impl=rueidis", func(b *testing.B) { benchRueidisL1(b, mode) })
	}
}

func benchRistretto(b *testing.B, mode string, metrics bool, ttl time.Duration) {
	rc, err := ristretto.NewCache(&ristretto.Config[string, *fixture.Profile]{
		// The sizing of tiercache's default L1 (backends/ristretto defaults).
		NumCounters:        10 * tcristretto.DefaultMaxCost / 1024,
		MaxCost:            tcristretto.DefaultMaxCost,
		BufferItems:        64,
		Metrics:            metrics,
		IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	keys := hitKeySet()
	for i, k := range keys {
		// ttl == 0 for the floors, as tiercache's default L1 stores; ttl > 0
		// makes ristretto read the clock on every Get.
		for range 10 {
			rc.SetWithTTL(k, fixture.NewProfile(int64(i+1)), contender.EntryCost, ttl)
			rc.Wait()
			if _, ok := rc.Get(k); ok {
				break
			}
		}
		if _, ok := rc.Get(k); !ok {
			b.Fatalf("ristretto did not keep %s", k)
		}
	}
	b.ReportAllocs()
	if mode == "serial" {
		i := 0
		for b.Loop() {
			p, ok := rc.Get(keys[i%hitKeys])
			if !ok {
				b.Fatal("miss")
			}
			sink = p
			i++
		}
		return
	}
	var off offsets
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := off.next()
		for pb.Next() {
			p, ok := rc.Get(keys[i%hitKeys])
			if !ok {
				b.Fatal("miss")
			}
			if p == nil {
				sink = p
			}
			i++
		}
	})
}

func benchTiercacheL1(b *testing.B, mode string) {
	rdb := newRedis(b)
	c, err := tier.New(&tier.Options[*fixture.Profile]{
		Name:      "profiles",
		Namespace: namespace("l1hit"),
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
		if _, err := c.GetOrLoad(ctx, k, loadProfile); err != nil {
			b.Fatal(err)
		}
	}
	// GetOrLoad returns before the flight has put the value in L1.
	for _, k := range keys {
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, ok := c.GetIfPresent(k); ok {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("L1 did not keep %s", k)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	misses := c.Stats().Misses
	b.ReportAllocs()
	if mode == "serial" {
		i := 0
		for b.Loop() {
			p, err := c.GetOrLoad(ctx, keys[i%hitKeys], loadProfile)
			if err != nil {
				b.Fatal(err)
			}
			sink = p
			i++
		}
	} else {
		var off offsets
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := off.next()
			for pb.Next() {
				p, err := c.GetOrLoad(ctx, keys[i%hitKeys], loadProfile)
				if err != nil {
					b.Fatal(err)
				}
				if p == nil {
					sink = p
				}
				i++
			}
		})
	}
	b.StopTimer()
	if m := c.Stats().Misses - misses; m != 0 {
		b.Fatalf("%d L1 misses during an L1-hit benchmark", m)
	}
}

func benchGoRedisCacheL1(b *testing.B, mode string) {
	rdb := newRedis(b)
	ns := namespace("l1hit-grc") + ":"
	c := cache.New(&cache.Options{Redis: rdb, LocalCache: cache.NewTinyLFU(10*hitKeys, keyTTL)})
	ctx := context.Background()
	keys := hitKeySet()
	for i := range keys {
		keys[i] = ns + keys[i]
	}
	item := func(key string, p *fixture.Profile) *cache.Item {
		return &cache.Item{Ctx: ctx, Key: key, Value: p, TTL: keyTTL, Do: func(it *cache.Item) (any, error) {
			return fixture.NewProfile(fixture.ID(it.Key)), nil
		}}
	}
	for _, k := range keys {
		if err := c.Once(item(k, new(fixture.Profile))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	if mode == "serial" {
		i := 0
		for b.Loop() {
			p := new(fixture.Profile)
			if err := c.Once(item(keys[i%hitKeys], p)); err != nil {
				b.Fatal(err)
			}
			sink = p
			i++
		}
		return
	}
	var off offsets
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := off.next()
		for pb.Next() {
			p := new(fixture.Profile)
			if err := c.Once(item(keys[i%hitKeys], p)); err != nil {
				b.Fatal(err)
			}
			if p.ID == 0 {
				sink = p
			}
			i++
		}
	})
}

// newRueidis returns a rueidis client of the run's Redis, with client-side
// caching unless disabled.
func newRueidis(b *testing.B, cacheBytes int) rueidis.Client {
	b.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{redisAddr(b)},
		DisableCache:      cacheBytes == 0,
		CacheSizeEachConn: cacheBytes,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// storeRaw writes the plain msgpack encoding of each key's profile under
// prefix+key, as an application using Redis directly would.
func storeRaw(b *testing.B, prefix string, keys []string) {
	b.Helper()
	rdb := newRedis(b)
	ctx := context.Background()
	for _, k := range keys {
		enc, err := msgpack.Marshal(fixture.NewProfile(fixture.ID(k)))
		if err != nil {
			b.Fatal(err)
		}
		if err := rdb.Set(ctx, prefix+k, enc, keyTTL).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRueidisL1(b *testing.B, mode string) {
	prefix := namespace("l1hit-rueidis") + ":"
	keys := hitKeySet()
	storeRaw(b, prefix, keys)
	c := newRueidis(b, 10*hitKeys*contender.EntryCost)
	ctx := context.Background()
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = prefix + k
	}
	get := func(i uint64) *fixture.Profile {
		res := c.DoCache(ctx, c.B().Get().Key(full[i%hitKeys]).Cache(), keyTTL)
		raw, err := res.AsBytes()
		if err != nil {
			b.Fatal(err)
		}
		p := new(fixture.Profile)
		if err := msgpack.Unmarshal(raw, p); err != nil {
			b.Fatal(err)
		}
		return p
	}
	for i := range full {
		get(uint64(i))
		if !c.DoCache(ctx, c.B().Get().Key(full[i]).Cache(), keyTTL).IsCacheHit() {
			b.Fatalf("rueidis did not cache %s", keys[i])
		}
	}
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
