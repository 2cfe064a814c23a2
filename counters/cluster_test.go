package counters_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/redistest"
)

type countObserver struct{ counts [8]atomic.Int64 }

func (o *countObserver) Event(_ context.Context, e counters.Event) { o.counts[e.Kind].Add(1) }
func (o *countObserver) n(k counters.EventKind) int64              { return o.counts[k].Load() }

// addBoth adds perPhase increments of "bookings" and perPhase members of
// "visitors" from each instance, concurrently.
func addBoth(t *testing.T, perPhase int, cs ...*counters.Counters) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for i := range perPhase {
				require.NoError(t, c.Add("bookings", 1))
				require.NoError(t, c.AddUnique("visitors", fmt.Sprint("v", i)))
			}
		})
	}
	wg.Wait()
}

// TestCounters_ClusterMasterKilled: on a 3+3 Cluster, two instances add N
// increments in all with WaitReplicas 1 and the default breaker; in the
// middle the master of the counter's slot is SIGKILLed (no graceful
// failover: what it had not replicated is lost). Flushes fail while its
// replica is promoted, increments accumulate, and once the flushes reach
// the new master the total is exactly N: a batch is done only when a
// replica has it, so none is lost in the failover, and the marker keeps a
// retried batch from counting twice.
func TestCounters_ClusterMasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster and kills a master; run without -short")
	}
	t.Parallel()
	cl := redistest.StartCluster(t, nil)
	rdb := cl.Client(t)
	obs := &countObserver{}
	mk := func(instance string) *counters.Counters {
		c, err := counters.New(&counters.Options{Client: rdb, Instance: instance, Timeout: 2 * time.Second, WaitReplicas: 1, Observer: obs})
		require.NoError(t, err)
		return c
	}
	a, b := mk("a"), mk("b")
	ctx := t.Context()
	const perPhase = 300
	addBoth(t, perPhase, a, b)
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, b.Flush(ctx))

	master := cl.MasterOfKey("counters:{bookings}:f:a")
	replica := cl.ReplicaOf(master)
	require.NotNil(t, replica)
	master.Kill()
	addBoth(t, perPhase, a, b)
	require.ErrorIs(t, a.Flush(ctx), counters.ErrUnavailable)
	require.ErrorIs(t, b.Flush(ctx), counters.ErrUnavailable)
	addBoth(t, perPhase, a, b)
	cl.WaitPromoted(replica)
	// The promoted replica has no replica of its own until the killed
	// master comes back as one: until then WAIT 1 cannot be met and the
	// batches stay in flight (applied on the new master, retried, skipped
	// by the marker).
	err := a.Flush(ctx)
	require.ErrorIs(t, err, counters.ErrUnavailable)
	t.Logf("flush after the promotion, before the old master is back: %v", err)
	master.Restart()
	cl.WaitHealthy()
	require.Eventually(t, func() bool { return a.Flush(ctx) == nil }, 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return b.Flush(ctx) == nil }, 30*time.Second, 20*time.Millisecond)
	require.Zero(t, a.Pending())
	require.Zero(t, b.Pending())

	now := time.Now()
	sum, err := a.Sum(ctx, "bookings", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.EqualValues(t, 3*2*perPhase, sum, "exactly N after the failover")
	t.Logf("events: flushed %d, replayed %d, unavailable %d", obs.n(counters.EventFlushed), obs.n(counters.EventReplayed), obs.n(counters.EventUnavailable))
	u, err := b.Unique(ctx, "visitors", now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.InDelta(t, perPhase, u, perPhase*0.05)
	require.Positive(t, obs.n(counters.EventUnavailable))
	require.Positive(t, obs.n(counters.EventFlushed))
}

// TestCounters_Breaker: with Redis killed, two failed flushes open the
// breaker (2 failures, on a fake clock); the next flush and query fail at
// once without a call, the increments kept. Once Redis is back and the
// cool-down has passed on the fake clock, one probe flush writes them:
// the total is exact.
func TestCounters_Breaker(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts redis-server; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	br := breaker.New(breaker.Options{Failures: 2, Cooldown: time.Minute, Now: clock.Load})
	obs := &countObserver{}
	c, err := counters.New(&counters.Options{Client: rdb, Instance: "a", Timeout: 300 * time.Millisecond, Breaker: br, Observer: obs})
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, c.Add("revenue", 5))
	srv.Kill()
	require.ErrorIs(t, c.Flush(ctx), counters.ErrUnavailable)
	require.ErrorIs(t, c.Flush(ctx), counters.ErrUnavailable)
	require.Equal(t, breaker.Open, br.State())
	err = c.Flush(ctx)
	require.ErrorIs(t, err, counters.ErrUnavailable)
	require.ErrorContains(t, err, "breaker open")
	_, err = c.Sum(ctx, "revenue", time.Now().Add(-time.Hour), time.Now())
	require.ErrorContains(t, err, "breaker open")
	require.NoError(t, c.Add("revenue", 2))
	require.Equal(t, 2, c.Pending(), "the in-flight batch's cell and the new increment's, which waits for the next batch")
	require.EqualValues(t, 4, obs.n(counters.EventUnavailable))

	srv.Restart()
	clock.Add(int64(time.Minute))
	// go-redis answers with its last dial error until its prober has
	// reached the server again: each failed probe reopens the breaker, so
	// the clock moves past the cool-down before each attempt.
	require.Eventually(t, func() bool {
		clock.Add(int64(time.Minute))
		return c.Flush(ctx) == nil
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, breaker.Closed, br.State())
	require.Zero(t, c.Pending())
	sum, err := c.Sum(ctx, "revenue", time.Now().Add(-time.Hour), time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 7, sum)
}
