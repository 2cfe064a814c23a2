package contender

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/backends/ristretto"
	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
	"github.com/tiercache/tiercache/tier"
)

type tiercacheContender struct {
	rdb    *redis.Client
	c      *tier.Cache[*fixture.Profile]
	l1     *ristretto.Cache[*tier.Entry[*fixture.Profile]] // nil without a local tier
	origin Origin
	load   tier.LoadFunc[*fixture.Profile]
}

// NewTiercache returns tiercache over go-redis with an L1 of cfg.L1Entries
// profiles (none when 0): the L1 tier.New would make by default
// (backends/ristretto), built here so that [Holder] can look into it.
// With [SizeEntries] an entry costs 1 and L1 is bounded by L1Entries (ten
// admission counters per entry); with [SizeBytes], the default cost
// (bytes) and L1Entries × [EntryCost] bytes, exactly the default L1 for
// that L1MaxCost.
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
	}
	t := &tiercacheContender{rdb: rdb, origin: cfg.Origin}
	switch {
	case cfg.L1Entries == 0:
		o.L1 = fixture.NeverLocal[*fixture.Profile]{}
	case cfg.Sizing == SizeBytes:
		o.L1MaxCost = int64(cfg.L1Entries) * EntryCost
		t.l1, err = ristretto.New[*tier.Entry[*fixture.Profile]](&ristretto.Options{MaxCost: o.L1MaxCost})
	default:
		o.Cost = func(string, *fixture.Profile, int) int64 { return 1 }
		t.l1, err = ristretto.New[*tier.Entry[*fixture.Profile]](&ristretto.Options{MaxCost: int64(cfg.L1Entries), AvgCost: 1})
	}
	if err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("contender: tiercache L1: %w", err)
	}
	if t.l1 != nil {
		o.L1 = t.l1
	}
	t.c, err = tier.New(o)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	t.load = func(ctx context.Context, key string) (*fixture.Profile, error) {
		return t.origin(ctx, fixture.ID(key))
	}
	return t, nil
}

func (t *tiercacheContender) Get(ctx context.Context, key string, _ int64) (*fixture.Profile, error) {
	return t.c.GetOrLoad(ctx, key, t.load)
}

func (t *tiercacheContender) LocalHits() uint64 { return t.c.Stats().L1Hits }

func (t *tiercacheContender) Holds(key string) bool {
	if t.l1 == nil {
		return false
	}
	_, ok := t.l1.Get(key)
	return ok
}

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
