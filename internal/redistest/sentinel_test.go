package redistest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSentinel_Failover: SENTINEL FAILOVER promotes the replica; the old
// master follows it once a Sentinel reconfigures it; the failover client
// follows the switch.
func TestSentinel_Failover(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s := StartSentinel(t, nil)
	t.Logf("sentinel set ready in %v", time.Since(began).Round(time.Millisecond))
	require.Len(t, s.Servers(), 2)
	require.Len(t, s.SentinelAddrs(), 3)
	require.Equal(t, "mymaster", s.MasterName())
	first := s.Master()
	require.Equal(t, s.Servers()[0], first)
	rdb := s.Client(t)
	ctx := t.Context()
	require.NoError(t, rdb.Set(ctx, "k", "1", 0).Err())

	began = time.Now()
	second := s.Failover()
	t.Logf("SENTINEL FAILOVER switched in %v", time.Since(began).Round(time.Millisecond))
	require.NotEqual(t, first, second)
	require.Equal(t, second, s.Master())
	require.Eventually(t, func() bool { return rdb.Set(ctx, "k", "2", 0).Err() == nil }, 10*time.Second, 10*time.Millisecond,
		"the failover client follows the switch")
	r, err := role(adminClient(t, second))
	require.NoError(t, err)
	require.Equal(t, "master", r)
}

// TestSentinel_KillMaster: the Sentinels agree that a killed master is down
// and promote its replica; the failover client follows.
func TestSentinel_KillMaster(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t, nil)
	rdb := s.Client(t)
	ctx := t.Context()
	require.NoError(t, rdb.Set(ctx, "k", "1", 0).Err())
	require.NoError(t, rdb.Wait(ctx, 1, time.Second).Err())

	began := time.Now()
	killed := s.KillMaster()
	next := s.WaitSwitch(killed)
	t.Logf("killed master replaced in %v", time.Since(began).Round(time.Millisecond))
	require.NotEqual(t, killed, next)
	require.Eventually(t, func() bool { return rdb.Get(ctx, "k").Val() == "1" }, 10*time.Second, 10*time.Millisecond)
}
