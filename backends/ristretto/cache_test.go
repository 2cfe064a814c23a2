package ristretto_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/backends/ristretto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// ristretto's Close does not wait for its background goroutines.
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
	)
}

func TestCache_SetWaitGet(t *testing.T) {
	t.Parallel()
	c := ristretto.Must[*int](nil)
	defer c.Close()
	v := 7
	require.True(t, c.Set("k", &v, 10, time.Hour))
	c.Wait()
	got, ok := c.Get("k")
	require.True(t, ok)
	require.Same(t, &v, got, "values are shared, not copied")
	require.EqualValues(t, 1, c.Hits())
	require.EqualValues(t, 10, c.Cost())
	c.Delete("k")
	_, ok = c.Get("k")
	require.False(t, ok)
	c.Close()
	c.Close() // idempotent
	_, ok = c.Get("k")
	require.False(t, ok, "a closed cache misses")
}

func TestCache_TTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		useTTL bool
		want   bool
	}{
		{name: "ignored by default", useTTL: false, want: true},
		{name: "enforced with UseTTL", useTTL: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ristretto.Must[string](&ristretto.Options{UseTTL: tt.useTTL})
			defer c.Close()
			require.True(t, c.Set("k", "v", 1, time.Nanosecond))
			c.Wait()
			require.Eventually(t, func() bool {
				_, ok := c.Get("k")
				return ok == tt.want
			}, 5*time.Second, time.Millisecond)
		})
	}
}

func TestCache_BoundedByCost(t *testing.T) {
	t.Parallel()
	c := ristretto.Must[int](&ristretto.Options{MaxCost: 1000, AvgCost: 10})
	defer c.Close()
	for i := range 1000 {
		c.Set(string(rune('a'+i%26))+string(rune(i)), i, 10, 0)
	}
	c.Wait()
	require.LessOrEqual(t, c.Cost(), int64(1000))
	require.Positive(t, c.Evicted()+c.SetsRejected()+c.SetsDropped(), "the bound was enforced")
}

func TestNew_InvalidOptions(t *testing.T) {
	t.Parallel()
	_, err := ristretto.New[int](&ristretto.Options{MaxCost: -1})
	require.ErrorIs(t, err, ristretto.ErrInvalidOptions)
}

// Evicted counts what the cache removed for room, not Deletes (ristretto's
// own KeysEvicted counts both).
func TestCache_Evicted_NotDeletes(t *testing.T) {
	t.Parallel()
	c := ristretto.Must[int](&ristretto.Options{MaxCost: 100, AvgCost: 10})
	defer c.Close()
	for i := range 5 {
		require.True(t, c.Set(fmt.Sprint("k", i), i, 10, 0))
		c.Wait()
	}
	for i := range 5 {
		c.Delete(fmt.Sprint("k", i))
	}
	c.Wait()
	require.Zero(t, c.Evicted(), "Deletes are not evictions")
	for i := range 30 { // 300 of cost into a bound of 100
		require.True(t, c.Set(fmt.Sprint("f", i), i, 10, 0))
		c.Wait()
	}
	require.Positive(t, c.Evicted(), "evictions for room are")
	require.LessOrEqual(t, c.Cost(), int64(100))
}
