package demo_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/notify/demo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// TestStart: 100 bookings by 7 guests with 5 experts, every tenth retried:
// 200 confirmations queued, the 20 retried ones absorbed by their dedup
// key, all 200 sent in fewer digests, the dashboard counts 100 bookings
// and 7 guests, and the demo removes its keys.
func TestStart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	d, err := demo.Start(t.Context(), demo.Config{Client: rdb, MaxDelay: 200 * time.Millisecond})
	require.NoError(t, err)
	for id := int64(1); id <= 100; id++ {
		d.Booked(t.Context(), id, id%7, id%5)
	}
	rep, err := d.Stop(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 100, rep.Bookings)
	require.EqualValues(t, 200, rep.Enqueued)
	require.EqualValues(t, 20, rep.Duplicates)
	require.EqualValues(t, 200, rep.Notified)
	require.Zero(t, rep.Left)
	require.Zero(t, rep.Failed)
	require.Zero(t, rep.Absorbed)
	require.Less(t, rep.Digests, int64(200))
	require.GreaterOrEqual(t, rep.Digests, int64(12), "7 guests and 5 experts get at least one digest each")
	require.EqualValues(t, 100, rep.BookingsLastHour)
	require.EqualValues(t, 7, rep.DistinctGuests)
	require.Positive(t, rep.CachedP50)
	require.Positive(t, rep.QueryP50)
	var buf bytes.Buffer
	require.NoError(t, rep.Print(&buf))
	require.Contains(t, buf.String(), "duplicates absorbed")
	require.Contains(t, buf.String(), "bookings, last hour")
	t.Log("\n" + buf.String())
	n, err := rdb.DBSize(t.Context()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the demo removed its keys")
}
