package redistest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCluster starts one cluster and drives every fault on it in turn: the
// routing the helpers report matches go-redis's, a slot moves with its
// keys, a graceful failover, a killed master replaced by its replica, and a
// restarted node that rejoins.
func TestCluster(t *testing.T) {
	t.Parallel()
	began := time.Now()
	c := StartCluster(t, nil)
	t.Logf("cluster of %d nodes ready in %v", len(c.Nodes()), time.Since(began).Round(time.Millisecond))
	require.Len(t, c.Nodes(), 6)
	require.Len(t, c.Masters(), 3)
	for _, m := range c.Masters() {
		require.NotNil(t, c.ReplicaOf(m), "every master has a replica")
	}
	rdb := c.Client(t)
	ctx := t.Context()

	// Keys land where MasterOfKey says.
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		require.NoError(t, rdb.Set(ctx, k, i, 0).Err())
		require.EqualValues(t, 1, adminClient(t, c.MasterOfKey(k)).Exists(ctx, k).Val(), "key %s", k)
	}
	require.Equal(t, 12182, c.Slot("foo"))

	// A slot moves with its keys.
	slot := c.Slot("k1")
	from := c.MasterOf(slot)
	var to *Server
	for _, m := range c.Masters() {
		if m != from {
			to = m
			break
		}
	}
	c.MigrateSlot(slot, to)
	require.Equal(t, to, c.MasterOf(slot))
	require.Equal(t, "1", rdb.Get(ctx, "k1").Val(), "the key moved with its slot")
	require.Zero(t, adminClient(t, from).Exists(ctx, "k1").Val())

	// Graceful failover: the replica takes over, and its old master
	// follows it; no write is lost.
	m := c.MasterOfKey("k2")
	r := c.ReplicaOf(m)
	c.Failover(r)
	require.Equal(t, r, c.MasterOfKey("k2"))
	require.Equal(t, m, c.ReplicaOf(r))
	require.Equal(t, "2", c.Client(t).Get(ctx, "k2").Val())

	// A killed master is replaced by its replica.
	killed := time.Now()
	r.Kill()
	c.WaitPromoted(m)
	t.Logf("replica promoted %v after its master was killed", time.Since(killed).Round(time.Millisecond))
	require.Equal(t, m, c.MasterOfKey("k2"))
	require.Nil(t, c.ReplicaOf(m))
	require.Len(t, c.Masters(), 3)
	require.Equal(t, "2", c.Client(t).Get(ctx, "k2").Val())

	// Restarted, the old node rejoins as a replica (its nodes.conf is kept).
	r.Restart()
	c.WaitHealthy()
	require.Equal(t, r, c.ReplicaOf(m))

	// A paused master: the cluster is not healthy until it is resumed.
	p := c.MasterOfKey("k3")
	p.Pause()
	require.Error(t, c.healthy())
	p.Resume()
	c.WaitHealthy()
	require.Equal(t, p, c.MasterOfKey("k3"), "a pause shorter than NodeTimeout fails nothing over")
}

func TestParseClusterNodes(t *testing.T) {
	t.Parallel()
	out := "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,hostname2 master - 0 1426238316232 2 connected 5461-10922 [10923->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]\n" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460 10923\n" +
		"6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail? - 1426238316232 0 5 disconnected\n"
	v, err := parseClusterNodes(out)
	require.NoError(t, err)
	require.Len(t, v, 4)
	e := v["e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"]
	require.True(t, e.flags["myself"] && e.flags["master"])
	require.Equal(t, [][2]int{{0, 5460}, {10923, 10923}}, e.slots)
	require.True(t, e.serves(10923))
	require.False(t, e.serves(5461))
	require.Equal(t, "127.0.0.1:30001", e.addr)
	require.Equal(t, [][2]int{{5461, 10922}}, v["67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"].slots)
	require.Equal(t, "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", v["07c37dfeb235213a872192d90877d0cd55635b91"].master)
	require.True(t, v["6ec23923021cf3ffec47632106199cb7f496ce01"].failing())
	require.False(t, v["6ec23923021cf3ffec47632106199cb7f496ce01"].connected)
	_, err = parseClusterNodes("abc 127.0.0.1:1@2 master\n")
	require.Error(t, err)
}
