package tier_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// The Sentinel tests run the cluster tests' two instances, workload and
// stale-read checker (see cluster_test.go) over a local Sentinel set (a
// master, one replica, three Sentinels), each instance with its own
// go-redis failover clients (one for L2, one for its bus), while the
// master is replaced. No read may be stale beyond staleBound, and the
// workload must make progress after the switch.

// TestCache_Sentinel_MasterKilled: the master is SIGKILLed under the
// workload and the Sentinels promote its replica.
func TestCache_Sentinel_MasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	sentinelSwitch(t, func(s *redistest.Sentinel) {
		s.WaitSwitch(s.KillMaster())
	})
}

// TestCache_Sentinel_Failover: SENTINEL FAILOVER (graceful: the old
// master stays up and is turned into a replica later) under the workload.
func TestCache_Sentinel_Failover(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	sentinelSwitch(t, func(s *redistest.Sentinel) { s.Failover() })
}

// sentinelSwitch runs the workload on a fresh Sentinel set, calls change
// (which returns once every Sentinel names the new master), and checks:
// writes and L2 reads come back (A sets a fresh key, B reads it from L2);
// reads and writes of the workload succeed after the switch; both
// instances saw the new master and moved to the next epoch; no read is
// stale beyond staleBound.
func sentinelSwitch(t *testing.T, change func(s *redistest.Sentinel)) {
	t.Helper()
	s := redistest.StartSentinel(t, nil)
	f, buses := startInstances(t, func() redis.UniversalClient { return s.Client(t) })
	ctx := t.Context()
	for _, b := range buses {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		require.NoError(t, b.Ready(rctx), "the bus is ready")
		cancel()
	}
	o, lags := newVersions(), &readLags{}
	wctx, stop := context.WithCancel(ctx)
	wg := f.run(wctx, o, lags, func(string) string { return "all" }, func(_ string, at, _ time.Time) time.Time { return at })

	time.Sleep(2 * time.Second) // the workload before the fault
	before := f.a.Key("x")
	fault := time.Now()
	change(s)
	switched := time.Now()
	lags.markNow()

	var n int64
	var writes time.Time
	require.Eventually(t, func() bool {
		n++
		k := fmt.Sprintf("probe:%d", n)
		if f.a.Set(ctx, k, n, 0) != nil {
			return false
		}
		if writes.IsZero() {
			writes = time.Now()
		}
		hits := f.b.Stats().L2Hits
		v, err := f.b.Get(ctx, k)
		return err == nil && v == n && f.b.Stats().L2Hits > hits
	}, 30*time.Second, 10*time.Millisecond, "writes and L2 reads came back after the switch")
	back := time.Now()
	t.Logf("the Sentinels agreed on the new master %v after the fault; then writes (with their publish) back after %v, L2 hits after %v (%v after the fault)",
		switched.Sub(fault).Round(time.Millisecond), writes.Sub(switched).Round(time.Millisecond),
		back.Sub(switched).Round(time.Millisecond), back.Sub(fault).Round(time.Millisecond))

	time.Sleep(3 * time.Second) // the workload after the fault
	stop()
	wg.Wait()
	t.Logf("after the switch: %d reads returned a value, %d writes returned no error", lags.okReadsAfter.Load(), lags.okWrAfter.Load())
	require.Positive(t, lags.okReadsAfter.Load(), "the workload read after the switch")
	require.Positive(t, lags.okWrAfter.Load(), "the workload wrote after the switch")
	for _, c := range []*tier.Cache[int64]{f.a, f.b} {
		require.Positive(t, c.Stats().L2Failovers, "the instance saw the new master")
	}
	require.NotEqual(t, before, f.a.Key("x"), "the namespace moved to its next epoch")
	require.Equal(t, f.a.Key("x"), f.b.Key("x"), "both instances use the same epoch")
	lags.report(t)
	t.Logf("A: %+v", f.a.Stats())
	t.Logf("B: %+v", f.b.Stats())
}
