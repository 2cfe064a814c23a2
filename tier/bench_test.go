package tier_test

import (
	"context"
	"strconv"
	"testing"

	dristretto "github.com/dgraph-io/ristretto/v2"

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
