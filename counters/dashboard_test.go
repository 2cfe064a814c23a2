package counters_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// TestDashboard_Sum: the first read runs the aggregate query, the next
// ones are answered from the cache (an increment flushed meanwhile is not
// seen until the figure is refreshed).
func TestDashboard_Sum(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := newCounters(t, rdb, "a")
	ctx := t.Context()
	require.NoError(t, c.Add("bookings", 3))
	require.NoError(t, c.Flush(ctx))
	d, err := counters.NewDashboard(c, &tier.Options[int64]{TTL: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	v, err := d.Sum(ctx, "bookings", time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 3, v)
	require.NoError(t, c.Add("bookings", 4))
	require.NoError(t, c.Flush(ctx))
	v, err = d.Sum(ctx, "bookings", time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 3, v, "cached")
	u, err := d.Unique(ctx, "nobody", time.Hour)
	require.NoError(t, err)
	require.Zero(t, u)
}
