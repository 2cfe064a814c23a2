package tier_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tier"
)

// TestCache_DeleteAndWait_Unsupported: without an Invalidator that can wait
// (here none), the waiting writes refuse and change nothing.
func TestCache_DeleteAndWait_Unsupported(t *testing.T) {
	t.Parallel()
	c, err := tier.New(&tier.Options[string]{Namespace: "waitall"})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	require.NoError(t, c.Set(t.Context(), "k", "old", 0))

	require.ErrorIs(t, c.SetAndWait(t.Context(), "k", "new", 0), tier.ErrAckUnsupported)
	require.ErrorIs(t, c.DeleteAndWait(t.Context(), "k"), tier.ErrAckUnsupported)
	v, ok := c.GetIfPresent("k")
	require.True(t, ok)
	require.Equal(t, "old", v, "nothing was written")

	require.NoError(t, c.Close())
	require.ErrorIs(t, c.DeleteAndWait(t.Context(), "k"), tier.ErrClosed)
}
