package contender

import (
	"context"
	"sync/atomic"

	"github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
)

type goRedisCacheContender struct {
	rdb    *redis.Client
	c      *cache.Cache
	local  *countingLocal // nil without a local tier
	ns     string
	cfg    Config
	origin Origin
}

// NewGoRedisCache returns go-redis/cache with its TinyLFU local cache of
// cfg.L1Entries entries (none when 0) over go-redis, whatever cfg.Sizing:
// TinyLFU counts entries.
func NewGoRedisCache(cfg Config) (Contender, error) {
	rdb := redis.NewClient(redisOptions(cfg))
	o := &cache.Options{Redis: rdb}
	g := &goRedisCacheContender{rdb: rdb, ns: cfg.Namespace + ":", cfg: cfg, origin: cfg.Origin}
	if cfg.L1Entries > 0 {
		g.local = &countingLocal{LocalCache: cache.NewTinyLFU(cfg.L1Entries, cfg.TTL)}
		o.LocalCache = g.local
	}
	g.c = cache.New(o)
	return g, nil
}

func (g *goRedisCacheContender) Get(ctx context.Context, key string, id int64) (*fixture.Profile, error) {
	p := new(fixture.Profile)
	err := g.c.Once(&cache.Item{
		Ctx:   ctx,
		Key:   g.ns + key,
		Value: p,
		TTL:   g.cfg.TTL,
		Do: func(it *cache.Item) (any, error) {
			return g.origin(it.Context(), id)
		},
	})
	return p, err
}

func (g *goRedisCacheContender) LocalHits() uint64 {
	if g.local == nil {
		return 0
	}
	return g.local.hits.Load()
}

func (g *goRedisCacheContender) Holds(key string) bool {
	if g.local == nil {
		return false
	}
	_, ok := g.local.LocalCache.Get(g.ns + key)
	return ok
}

func (g *goRedisCacheContender) Close() error { return g.rdb.Close() }

// countingLocal counts the hits of go-redis/cache's local cache, which the
// library does not report.
type countingLocal struct {
	cache.LocalCache
	hits atomic.Uint64
}

func (c *countingLocal) Get(key string) ([]byte, bool) {
	b, ok := c.LocalCache.Get(key)
	if ok {
		c.hits.Add(1)
	}
	return b, ok
}
