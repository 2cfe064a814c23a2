package counters_test

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/internal/redistest"
)

func newCounters(t *testing.T, rdb redis.UniversalClient, instance string) *counters.Counters {
	t.Helper()
	// A generous bound on each call: on a busy machine a flush of many
	// cells may take longer than the default, and a slow answer must not
	// read as Redis being down in tests that are not about that (a killed
	// Redis fails at once: connection refused).
	c, err := counters.New(&counters.Options{Client: rdb, Instance: instance, Timeout: 10 * time.Second})
	require.NoError(t, err)
	return c
}

// TestCounters_RedisKilled: two instances add N increments in all; in the
// middle Redis is killed (after a SAVE, so the restarted server comes back
// with what was flushed before, as a persistent Redis would) and both
// instances go on adding. After the restart one flush each brings the
// total to exactly N.
func TestCounters_RedisKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	a, b := newCounters(t, rdb, "a"), newCounters(t, rdb, "b")
	ctx := t.Context()
	const perPhase = 500
	add := func() {
		var wg sync.WaitGroup
		for _, c := range []*counters.Counters{a, b} {
			wg.Go(func() {
				for i := range perPhase {
					require.NoError(t, c.Add("bookings", 1))
					require.NoError(t, c.AddUnique("visitors", fmt.Sprint("v", i)))
				}
			})
		}
		wg.Wait()
	}
	add()
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, b.Flush(ctx))
	require.NoError(t, rdb.Save(ctx).Err())
	srv.Kill()
	add()
	require.ErrorIs(t, a.Flush(ctx), counters.ErrUnavailable)
	require.ErrorIs(t, b.Flush(ctx), counters.ErrUnavailable)
	add()
	srv.Restart()
	// go-redis answers with its last dial error until its prober has
	// reached the server again.
	require.Eventually(t, func() bool { return a.Flush(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.Flush(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, a.Pending())
	now := time.Now()
	sum, err := a.Sum(ctx, "bookings", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.EqualValues(t, 3*2*perPhase, sum)
	u, err := b.Unique(ctx, "visitors", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.InDelta(t, perPhase, u, perPhase*0.05)
}

// TestCounters_UnknownOutcome: Redis is paused while a flush is in
// flight, so the flush times out, and resumed: the script then runs (the
// batch was applied, the instance does not know). The retry carries the
// same batch number and is skipped: the total is exact.
func TestCounters_UnknownOutcome(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := newCounters(t, rdb, "a")
	ctx := t.Context()
	for range 100 {
		require.NoError(t, c.Add("revenue", 7))
	}
	srv.Pause()
	require.ErrorIs(t, c.Flush(ctx), counters.ErrUnavailable)
	require.NoError(t, c.Add("revenue", 1)) // waits for the next batch
	srv.Resume()
	require.Eventually(t, func() bool { return c.Flush(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Flush(ctx))
	now := time.Now()
	sum, err := c.Sum(ctx, "revenue", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.EqualValues(t, 701, sum)
}

// TestCounters_HyperLogLogError: 100,000 distinct members over two
// instances and many buckets; the estimate is within 3 standard errors
// (3 × 0.81%) of the truth.
func TestCounters_HyperLogLogError(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	a, b := newCounters(t, rdb, "a"), newCounters(t, rdb, "b")
	ctx := t.Context()
	const n = 100000
	start := time.Now().Add(-30 * time.Minute)
	for i := range n {
		c := a
		if i%2 == 1 {
			c = b
		}
		at := start.Add(time.Duration(i%30) * time.Minute)
		require.NoError(t, c.AddUniqueAt("users", fmt.Sprint("user-", i), at))
		if i%3 == 0 { // a member seen again elsewhere counts once
			require.NoError(t, a.AddUniqueAt("users", fmt.Sprint("user-", i), at.Add(time.Minute)))
		}
	}
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, b.Flush(ctx))
	got, err := a.Unique(ctx, "users", start, start.Add(31*time.Minute))
	require.NoError(t, err)
	rel := math.Abs(float64(got)-n) / n
	t.Logf("HyperLogLog estimate %d of %d: error %.3f%%", got, n, 100*rel)
	require.Less(t, rel, 3*0.0081)
}

func TestCounters_Buckets(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := newCounters(t, rdb, "a")
	ctx := t.Context()
	base := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for m := range 10 {
		require.NoError(t, c.AddAt("signups", int64(m), base.Add(time.Duration(m)*time.Minute+30*time.Second)))
	}
	require.NoError(t, c.Flush(ctx))
	sum, err := c.Sum(ctx, "signups", base.Add(2*time.Minute), base.Add(4*time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 2+3+4, sum)
	require.ErrorIs(t, c.Add("bad{name}", 1), counters.ErrInvalidOptions)
}

// TestCounters_GarbageBucket: a bucket key that holds something INCRBY
// cannot take is replaced, and the batch applies once. Before, the script
// failed at that bucket after incrementing the others (a script is not
// rolled back) without writing its marker, and every retry added them
// again (16 instead of 1 in a helper's run).
func TestCounters_GarbageBucket(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := newCounters(t, rdb, "a")
	ctx := t.Context()
	base := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	t0, t1 := base.Add(30*time.Second), base.Add(90*time.Second)
	require.NoError(t, c.AddAt("bookings", 5, t1))
	require.NoError(t, c.Flush(ctx))
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	var bucket string
	for _, k := range keys {
		if typ, _ := rdb.Type(ctx, k).Result(); typ == "string" && !strings.Contains(k, ":f:") {
			require.Empty(t, bucket, "one bucket: %v", keys)
			bucket = k
		}
	}
	require.NotEmpty(t, bucket)
	for _, garbage := range []func() error{
		func() error { return rdb.Set(ctx, bucket, "not-a-number", 0).Err() },
		func() error { return rdb.Set(ctx, bucket, "99999999999999999999", 0).Err() },
		func() error { return rdb.Set(ctx, bucket, "007", 0).Err() },
		func() error { return rdb.Set(ctx, bucket, "-0", 0).Err() },
		func() error { _ = rdb.Del(ctx, bucket).Err(); return rdb.LPush(ctx, bucket, "x").Err() },
	} {
		require.NoError(t, garbage())
		require.NoError(t, c.AddAt("bookings", 1, t0))
		require.NoError(t, c.AddAt("bookings", 1, t1))
		for range 5 {
			require.NoError(t, c.Flush(ctx))
		}
		sum, err := c.Sum(ctx, "bookings", t1.Add(-time.Second), t1.Add(time.Second))
		require.NoError(t, err)
		require.EqualValues(t, 1, sum, "the garbage was replaced by the batch's increment")
		require.NoError(t, rdb.Set(ctx, bucket, "0", 0).Err())
	}
	sum, err := c.Sum(ctx, "bookings", t0.Add(-time.Second), t0.Add(time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 5, sum, "each batch's other bucket counted once")

	// A marker that is not a number is read as none: flushes go on.
	markers, err := rdb.Keys(ctx, "*:f:*").Result()
	require.NoError(t, err)
	require.Len(t, markers, 1)
	require.NoError(t, rdb.Set(ctx, markers[0], "junk", 0).Err())
	require.NoError(t, c.AddAt("bookings", 1, t0))
	require.NoError(t, c.Flush(ctx))
	sum, err = c.Sum(ctx, "bookings", t0.Add(-time.Second), t0.Add(time.Second))
	require.NoError(t, err)
	require.EqualValues(t, 6, sum)
}

// TestCounters_RestartSameInstance: a process restarted under the same
// Instance name (a stable pod name) counts from its first flush. Before,
// its batch numbers started at 1 again, below the marker the earlier
// process left, and its first batches were skipped as already applied.
func TestCounters_RestartSameInstance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	for range 2 {
		c := newCounters(t, rdb, "web-1")
		for range 5 {
			require.NoError(t, c.Add("visits", 1))
			require.NoError(t, c.Flush(ctx))
		}
	}
	c := newCounters(t, rdb, "web-1")
	now := time.Now()
	sum, err := c.Sum(ctx, "visits", now.Add(-time.Hour), now.Add(time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 10, sum)
}

// TestCounters_MarkerAhead: the instance's marker is ahead of its batch
// numbers: left by an earlier process of the same Instance name whose
// clock was 10 s ahead (stepped back since), or junk that Lua's tonumber
// reads as a number ("inf", "1e20"). Every batch was skipped as applied,
// silently, until the marker expired (Retention + Bucket, never for junk
// without a TTL). Now the first batch is renumbered above a marker ahead
// (one EventRenumbered), junk is read as no marker, and every batch
// counts.
func TestCounters_MarkerAhead(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	for i, m := range []string{strconv.FormatInt(time.Now().Add(10*time.Second).UnixMicro(), 10), "inf", "1e20", "9007199254740992"} {
		name := fmt.Sprint("visits", i)
		require.NoError(t, rdb.Set(ctx, "counters:{"+name+"}:f:web-1", m, 0).Err())
		obs := &countObserver{}
		c, err := counters.New(&counters.Options{Client: rdb, Instance: "web-1", Timeout: 10 * time.Second, Observer: obs})
		require.NoError(t, err)
		for range 5 {
			require.NoError(t, c.Add(name, 1))
			require.NoError(t, c.Flush(ctx))
		}
		now := time.Now()
		sum, err := c.Sum(ctx, name, now.Add(-time.Hour), now.Add(time.Minute))
		require.NoError(t, err)
		require.EqualValues(t, 5, sum, "marker %q", m)
		require.Zero(t, obs.n(counters.EventReplayed), "marker %q: nothing skipped", m)
		renumbered := int64(0)
		if i == 0 {
			renumbered = 1 // the junk markers (and 2^53, past exact doubles) are read as none
		}
		require.Equal(t, renumbered, obs.n(counters.EventRenumbered), "marker %q", m)
	}
}

// TestCounters_GoneCallersOpenNothing: calls whose contexts have ended get
// ErrUnavailable without reaching Redis and say nothing to the breaker
// (five of them opened it, and every flush and query of every caller was
// refused for the cool-down).
func TestCounters_GoneCallersOpenNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := newCounters(t, rdb, "web-1")
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	now := time.Now()
	for range 5 {
		_, err := c.Sum(gone, "visits", now.Add(-time.Hour), now)
		require.ErrorIs(t, err, counters.ErrUnavailable)
		require.ErrorIs(t, err, context.Canceled)
	}
	require.NoError(t, c.Add("visits", 1))
	require.NoError(t, c.Flush(t.Context()), "the breaker is closed")
}
