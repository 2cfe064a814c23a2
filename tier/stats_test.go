package tier_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tier"
)

// Stats.L1Evicted counts evictions for room, not Deletes, and the counters
// keep their last values once the cache is closed (L1 forgets its own).
func TestCache_Stats_EvictedAndAfterClose(t *testing.T) {
	t.Parallel()
	c, err := tier.New(&tier.Options[string]{})
	require.NoError(t, err)
	ctx := t.Context()
	for _, k := range []string{"a", "b", "c"} {
		_, err := c.GetOrLoad(ctx, k, func(context.Context, string) (string, error) { return "v", nil })
		require.NoError(t, err)
	}
	tier.WaitL1(c)
	for _, k := range []string{"a", "b", "c"} {
		_, ok := c.GetIfPresent(k)
		require.True(t, ok)
	}
	require.NoError(t, c.Delete(ctx, "a", "b", "c"))
	tier.WaitL1(c)
	before := c.Stats()
	require.EqualValues(t, 3, before.L1Hits)
	require.Zero(t, before.L1Evicted, "Deletes are not evictions")

	require.NoError(t, c.Close())
	after := c.Stats()
	require.Equal(t, before.L1Hits, after.L1Hits, "kept after Close")
	require.Equal(t, before.Misses, after.Misses)
	require.Equal(t, before.L1SetsRejected, after.L1SetsRejected)
	require.Zero(t, after.L1Cost, "a closed L1 holds nothing")
	require.Zero(t, after.L1Evicted, "closing is not evicting")
}
