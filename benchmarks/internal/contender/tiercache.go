package contender

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
	"github.com/tiercache/tiercache/tier"
)

type tiercacheContender struct {
	rdb    *redis.Client
	c      *tier.Cache[*fixture.Profile]
	origin Origin
	load   tier.LoadFunc[*fixture.Profile]
}

// NewTiercache returns tiercache with its default L1 (ristretto, sized to
// cfg.L1Entries profiles, or none when 0) over go-redis.
func NewTiercache(cfg Config) (Contender, error) {
	rdb := redis.NewClient(redisOptions(cfg))
	l2, err := goredis.New(rdb, nil)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	o := &tier.Options[*fixture.Profile]{
		Name:      "profiles",
		Namespace: cfg.Namespace,
		L2:        l2,
		TTL:       cfg.TTL,
		L1MaxCost: int64(cfg.L1Entries) * EntryCost,
	}
	if cfg.L1Entries == 0 {
		o.L1 = fixture.NeverLocal[*fixture.Profile]{}
	}
	c, err := tier.New(o)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	t := &tiercacheContender{rdb: rdb, c: c, origin: cfg.Origin}
	t.load = func(ctx context.Context, key string) (*fixture.Profile, error) {
		return t.origin(ctx, fixture.ID(key))
	}
	return t, nil
}

func (t *tiercacheContender) Get(ctx context.Context, key string, _ int64) (*fixture.Profile, error) {
	return t.c.GetOrLoad(ctx, key, t.load)
}

func (t *tiercacheContender) LocalHits() uint64 { return t.c.Stats().L1Hits }

func (t *tiercacheContender) Close() error {
	_ = t.c.Close()
	return t.rdb.Close()
}

func redisOptions(cfg Config) *redis.Options {
	return &redis.Options{
		Addr:                  cfg.RedisAddr,
		ContextTimeoutEnabled: true, // goredis.New requires it
		DialTimeout:           cfg.RedisDialTimeout,
		ReadTimeout:           cfg.RedisTimeout,
		WriteTimeout:          cfg.RedisTimeout,
	}
}
