package tier_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tier"
)

func TestCache_EmptyTagRefused(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	load := func(context.Context, string) (string, error) { return "v", nil }
	_, err := c.GetOrLoadTagged(t.Context(), "k", []string{"expert:1", ""}, load)
	require.ErrorIs(t, err, tier.ErrInvalidKey)
	require.ErrorContains(t, err, "empty tag")
	require.ErrorIs(t, c.InvalidateTags(t.Context(), "expert:1", ""), tier.ErrInvalidKey)
	v, err := c.GetOrLoadTagged(t.Context(), "k", []string{"expert:1"}, load)
	require.NoError(t, err)
	require.Equal(t, "v", v)
}

// A nil loader answers from the tiers only, and caches nothing.
func TestCache_NilLoader(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	_, err := c.GetOrLoad(t.Context(), "k", nil)
	require.ErrorIs(t, err, tier.ErrNotFound)
	got, err := c.GetOrLoadMany(t.Context(), []string{"k", "k2"}, nil)
	require.NoError(t, err)
	require.Empty(t, got)
	require.NoError(t, c.Set(t.Context(), "k", "v", 0))
	got, err = c.GetOrLoadMany(t.Context(), []string{"k", "k2"}, nil)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k": "v"}, got)
	require.Zero(t, c.Stats().NegativeHits, "no negative entry was cached for k2")
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The footprint of an empty cache stated in Options.L1MaxCost's godoc: about
// 0.35 MiB plus 5% of L1MaxCost (ristretto's admission counters, which
// L1MaxCost sizes), 3.3 MiB at the default. Not parallel: it reads the
// process's heap (parallel tests start only after the sequential ones).
func TestNew_EmptyFootprint(t *testing.T) {
	const n = 8
	perCache := func(maxCost int64) float64 {
		before := heapInUse()
		cs := make([]*tier.Cache[string], n)
		for i := range cs {
			cs[i] = tier.Must(&tier.Options[string]{L1MaxCost: maxCost})
		}
		after := heapInUse()
		for _, c := range cs {
			require.NoError(t, c.Close())
		}
		return float64(after-before) / n / (1 << 20)
	}
	def, small := perCache(0), perCache(1<<20)
	t.Logf("empty cache: %.2f MiB at the default L1MaxCost (64 MiB), %.2f MiB at 1 MiB", def, small)
	require.Less(t, def, 4.0, "the default footprint stated in the godoc")
	require.Less(t, small, 0.6, "a small L1MaxCost makes a small empty cache")
}
