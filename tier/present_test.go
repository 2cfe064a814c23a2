package tier_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tier"
)

// TestCache_GetIfPresent_AfterLoad: a value GetOrLoad has just returned is
// present to the same caller's next GetIfPresent, although ristretto applies
// the L1 write asynchronously (the completed call answers until it is
// visible).
func TestCache_GetIfPresent_AfterLoad(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	for i := range 500 {
		key := "k" + strconv.Itoa(i)
		v, err := c.GetOrLoad(t.Context(), key, func(context.Context, string) (string, error) { return key, nil })
		require.NoError(t, err)
		require.Equal(t, key, v)
		got, ok := c.GetIfPresent(key)
		require.True(t, ok, "round %d", i)
		require.Equal(t, key, got)
	}
	// A failed or not-found load is never "present".
	_, err := c.GetOrLoad(t.Context(), "missing", func(context.Context, string) (string, error) { return "", tier.ErrNotFound })
	require.ErrorIs(t, err, tier.ErrNotFound)
	_, ok := c.GetIfPresent("missing")
	require.False(t, ok)
}
