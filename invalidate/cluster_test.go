package invalidate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
)

// namespacesOnMasters returns n namespaces whose channels are served by n
// different masters of c.
func namespacesOnMasters(t *testing.T, c *redistest.Cluster, n int) []string {
	t.Helper()
	seen := map[*redistest.Server]bool{}
	var out []string
	for i := 0; len(out) < n; i++ {
		require.Less(t, i, 1000, "no %d namespaces on distinct masters", n)
		ns := fmt.Sprintf("ns%d", i)
		m := c.MasterOfKey(invalidate.Channel(ns))
		if !seen[m] {
			seen[m] = true
			out = append(out, ns)
		}
	}
	return out
}

// TestBus_Cluster_InOrder: on a healthy 3-master cluster, one origin's
// messages reach another instance in order (no sequence gap, so no L1
// drop), whether the receiver is subscribed on the channel's master or
// hears it through the cluster bus; a message lost on the way is still
// detected, by the next data message or by the next heartbeat.
func TestBus_Cluster_InOrder(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, nil)
	nss := namespacesOnMasters(t, c, 3)
	a := startMember(t, c.Client(t), nil, nss...)
	b := startMember(t, c.Client(t), nil, nss...)
	ctx := t.Context()

	const n = 10000
	began := time.Now()
	for i := range n {
		require.NoError(t, a.pubs[nss[0]].Publish(ctx, []string{fmt.Sprint("k", i)}, nil))
	}
	s := b.sinks[nss[0]]
	s.waitFor(t, 10*time.Second, "every invalidation heard", func() bool { return s.count() == n })
	t.Logf("%d back-to-back invalidations in %v: %d gaps", n, time.Since(began).Round(time.Millisecond), b.bus.Stats().Gaps)
	require.Zero(t, b.bus.Stats().Gaps)
	require.Zero(t, s.untrusted("sequence_gap"))

	// Round robin over three channels on three masters: B is subscribed on
	// one of them and hears the other two through the cluster bus.
	for i := range 3000 {
		ns := nss[i%3]
		require.NoError(t, a.pubs[ns].Publish(ctx, []string{fmt.Sprint("r", i)}, nil))
	}
	for _, ns := range nss {
		s := b.sinks[ns]
		want := 1000
		if ns == nss[0] {
			want += n
		}
		s.waitFor(t, 10*time.Second, "round robin heard on "+ns, func() bool { return s.count() == want })
		require.Zero(t, s.untrusted("sequence_gap"), ns)
	}
	require.Zero(t, b.bus.Stats().Gaps)
	require.Zero(t, a.bus.Stats().SendErrors)

	t.Run("lost message detected", func(t *testing.T) {
		// X loses its 5th message (a later one reveals the gap) and its
		// 10th, the last (its next heartbeat reveals it).
		x := newMember(t, c.Client(t), &invalidate.Options{Heartbeat: 50 * time.Millisecond}, nss[0])
		invalidate.DropOnSend(x.bus, func(_ string, seq uint64) bool { return seq == 5 || seq == 10 })
		x.run(t)
		for i := range 10 {
			require.NoError(t, x.pubs[nss[0]].Publish(ctx, []string{fmt.Sprint("x", i)}, nil))
		}
		s := b.sinks[nss[0]]
		s.waitFor(t, 5*time.Second, "both losses detected", func() bool { return s.untrusted("sequence_gap") == 2 })
		_, heard := s.heard("x4")
		require.False(t, heard, "the 5th message was lost")
		_, heard = s.heard("x5")
		require.True(t, heard)
		require.EqualValues(t, 2, b.bus.Stats().Gaps)
	})
}
