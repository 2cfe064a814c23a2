package invalidate_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
)

// flow publishes from a on ns, one key at a time, until b hears one sent
// after since: a's bus publishes and b's is subscribed. It returns how
// long after since that key was heard, and how many publishes failed
// meanwhile. (A message published while b was not subscribed is lost;
// b's next subscription drops its L1 for that.)
func flow(t *testing.T, a, b *member, ns, prefix string, since time.Time) (time.Duration, int) {
	t.Helper()
	s := b.sinks[ns]
	failed := 0
	for i := 0; ; i++ {
		require.Less(t, time.Since(since), time.Minute, "no message got through")
		key := prefix + strconv.Itoa(i)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := a.pubs[ns].Publish(ctx, []string{key}, nil)
		cancel()
		if err != nil {
			failed++
			time.Sleep(10 * time.Millisecond) // the workload's pace, not a wait for the bus
			continue
		}
		if s.within(200*time.Millisecond, func() bool { _, ok := s.heard(key); return ok }) {
			at, _ := s.heard(key)
			return at.Sub(since), failed
		}
	}
}

// publishCalls returns how many PUBLISH commands node has run.
func publishCalls(t *testing.T, node *redistest.Server) int {
	t.Helper()
	info, err := node.Client(t).Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	for line := range strings.SplitSeq(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_publish:calls="); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			require.NoError(t, err)
			return n
		}
	}
	return 0
}

// TestBus_Cluster_MasterKilled: the master of the bus channel's slot (where
// both instances publish and subscribe) is killed. Each bus has its own
// cluster client with go-redis's defaults, used by nothing else, so no
// data path refreshes the slot map for it. Both buses must publish and be
// subscribed again on their own.
func TestBus_Cluster_MasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	c := redistest.StartCluster(t, nil)
	ns := "killed"
	a := startMember(t, c.Client(t), nil, ns)
	b := startMember(t, c.Client(t), nil, ns)
	_, _ = flow(t, a, b, ns, "before", time.Now())
	subscribed := b.sinks[ns].untrusted("subscribed")

	m := c.MasterOfKey(invalidate.Channel(ns))
	r := c.ReplicaOf(m)
	killed := time.Now()
	m.Kill()
	heard, failed := flow(t, a, b, ns, "after", killed)
	t.Logf("master of the channel's slot killed: a message got through %v later (%d publishes failed meanwhile)", heard.Round(time.Millisecond), failed)
	require.Greater(t, b.sinks[ns].untrusted("subscribed"), subscribed, "B subscribed again")

	c.WaitPromoted(r)
	t.Logf("cluster failover took %v", time.Since(killed).Round(time.Millisecond))
	// Once the slot map names the new master, the bus publishes there.
	s := b.sinks[ns]
	require.Eventually(t, func() bool {
		before := publishCalls(t, r)
		_, _ = flow(t, a, b, ns, "moved", time.Now())
		return publishCalls(t, r) > before
	}, 30*time.Second, 100*time.Millisecond, "publishes on the promoted replica")
	t.Logf("publishing on the new master %v after the kill; B: %+v, gaps seen %d", time.Since(killed).Round(time.Millisecond), b.bus.Stats(), s.untrusted("sequence_gap"))
}

// TestBus_Cluster_Failover: a graceful CLUSTER FAILOVER of the bus
// channel's master, then a migration of the channel's slot to another
// master; messages keep flowing, and once the client's slot map has
// changed the bus publishes on the new owner.
func TestBus_Cluster_Failover(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	c := redistest.StartCluster(t, nil)
	ns := "moved"
	ca := c.Client(t)
	a := startMember(t, ca, nil, ns)
	b := startMember(t, c.Client(t), nil, ns)
	_, _ = flow(t, a, b, ns, "before", time.Now())

	m := c.MasterOfKey(invalidate.Channel(ns))
	r := c.ReplicaOf(m)
	began := time.Now()
	c.Failover(r)
	heard, failed := flow(t, a, b, ns, "failover", began)
	t.Logf("CLUSTER FAILOVER: a message got through %v after it began (%d publishes failed)", heard.Round(time.Millisecond), failed)
	ca.ReloadState(t.Context()) // as a MOVED reply on the data path would
	require.Eventually(t, func() bool {
		before := publishCalls(t, r)
		_, _ = flow(t, a, b, ns, "promoted", time.Now())
		return publishCalls(t, r) > before
	}, 10*time.Second, 10*time.Millisecond, "publishes on the promoted replica")

	var to *redistest.Server
	for _, x := range c.Masters() {
		if x != r {
			to = x
			break
		}
	}
	began = time.Now()
	c.MigrateSlot(c.Slot(invalidate.Channel(ns)), to)
	heard, failed = flow(t, a, b, ns, "migrated", began)
	t.Logf("slot migration: a message got through %v after it began (%d publishes failed)", heard.Round(time.Millisecond), failed)
	ca.ReloadState(t.Context())
	require.Eventually(t, func() bool {
		before := publishCalls(t, to)
		_, _ = flow(t, a, b, ns, "owner", time.Now())
		return publishCalls(t, to) > before
	}, 10*time.Second, 10*time.Millisecond, "publishes on the slot's new owner")
	t.Logf("B: %+v", b.bus.Stats())
}

// sentinelMembers starts two buses on their own failover clients.
func sentinelMembers(t *testing.T, s *redistest.Sentinel, ns string) (a, b *member) {
	t.Helper()
	client := func() redis.UniversalClient { return s.Client(t) }
	return startMember(t, client(), nil, ns), startMember(t, client(), nil, ns)
}

// TestBus_Sentinel_MasterKilled: the master is killed; once the Sentinels
// have promoted the replica, both buses publish and are subscribed again.
func TestBus_Sentinel_MasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	s := redistest.StartSentinel(t, nil)
	ns := "killed"
	a, b := sentinelMembers(t, s, ns)
	_, _ = flow(t, a, b, ns, "before", time.Now())
	subscribed := b.sinks[ns].untrusted("subscribed")

	killed := time.Now()
	old := s.KillMaster()
	// No master until the Sentinels switch: wait for that (polling the
	// Sentinels), then see how long the buses take to follow.
	s.WaitSwitch(old)
	switched := time.Since(killed)
	heard, failed := flow(t, a, b, ns, "after", killed)
	t.Logf("Sentinel master killed: switch %v, a message got through %v after the kill (%d publishes failed)",
		switched.Round(time.Millisecond), heard.Round(time.Millisecond), failed)
	require.Greater(t, b.sinks[ns].untrusted("subscribed"), subscribed, "B subscribed again")
	t.Logf("B: %+v", b.bus.Stats())
}

// TestBus_Sentinel_Failover: SENTINEL FAILOVER promotes the replica while
// the old master stays a master (Sentinel turns it into a replica only
// about 10 s later). go-redis's failover client moves its data connections
// on +switch-master but not its pub/sub connections; the buses must follow
// the switch on their own.
func TestBus_Sentinel_Failover(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	s := redistest.StartSentinel(t, nil)
	ns := "switched"
	a, b := sentinelMembers(t, s, ns)
	_, _ = flow(t, a, b, ns, "before", time.Now())
	subscribed := b.sinks[ns].untrusted("subscribed")

	began := time.Now()
	s.Failover()
	switched := time.Since(began)
	heard, failed := flow(t, a, b, ns, "after", began)
	t.Logf("SENTINEL FAILOVER: switch %v, a message got through %v after it began (%d publishes failed)",
		switched.Round(time.Millisecond), heard.Round(time.Millisecond), failed)
	require.Greater(t, b.sinks[ns].untrusted("subscribed"), subscribed, "B subscribed again")
	t.Logf("B: %+v", b.bus.Stats())
}
