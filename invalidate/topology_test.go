package invalidate

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestTopology_Kinds: the bus tells a Cluster client, go-redis's Sentinel
// failover client and a plain client apart (none of them connects here).
func TestTopology_Kinds(t *testing.T) {
	t.Parallel()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	failover := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}})
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() {
		for _, c := range []redis.UniversalClient{cluster, failover, plain} {
			_ = c.Close()
		}
	})

	tc := newTopology(cluster)
	require.NotNil(t, tc.cluster)
	require.False(t, tc.probe)
	require.True(t, tc.retries())

	tf := newTopology(failover)
	require.Nil(t, tf.cluster)
	require.True(t, tf.probe, "go-redis still names a failover client's address %q", failover.Options().Addr)

	tp := newTopology(plain)
	require.Nil(t, tp.cluster)
	require.False(t, tp.probe)
	require.False(t, tp.retries())
}
