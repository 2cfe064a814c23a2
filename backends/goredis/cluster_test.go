package goredis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// testCluster is a Redis Cluster of real redis-server processes on
// loopback: three masters (the slots split evenly) and one replica of the
// first master, with cluster-node-timeout 1000 ms. It is what the data-path
// tests of this package need; the bus's tests get a general helper in
// internal/redistest.
type testCluster struct {
	masters [3]*redistest.Server
	replica *redistest.Server
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	args := []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "1000"}
	cl := &testCluster{}
	for i := range cl.masters {
		cl.masters[i] = redistest.Start(t, args...)
	}
	cl.replica = redistest.Start(t, args...)
	ctx := t.Context()
	admin := func(s *redistest.Server) *redis.Client { return s.Client(t) }
	ranges := [3][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for i, m := range cl.masters {
		require.NoError(t, admin(m).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", ranges[i][0], ranges[i][1]).Err())
	}
	for _, n := range cl.nodes()[1:] {
		require.NoError(t, admin(n).Do(ctx, "CLUSTER", "MEET", "127.0.0.1", cl.masters[0].Port()).Err())
	}
	require.Eventually(t, func() bool {
		for _, n := range cl.nodes() {
			s, err := admin(n).ClusterNodes(ctx).Result()
			if err != nil || strings.Count(strings.TrimSpace(s), "\n") != 3 {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "the nodes met")
	m0, err := admin(cl.masters[0]).ClusterMyID(ctx).Result()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return admin(cl.replica).Do(ctx, "CLUSTER", "REPLICATE", m0).Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "the replica follows the first master")
	require.Eventually(t, func() bool {
		for _, n := range cl.nodes() {
			info, err := admin(n).ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
			nodes, err := admin(n).ClusterNodes(ctx).Result()
			if err != nil || !strings.Contains(nodes, "slave "+m0) {
				return false
			}
		}
		repl, err := admin(cl.replica).Info(ctx, "replication").Result()
		return err == nil && strings.Contains(repl, "master_link_status:up")
	}, 20*time.Second, 20*time.Millisecond, "the cluster is ok and the replica in sync")
	return cl
}

func (cl *testCluster) nodes() []*redistest.Server {
	return []*redistest.Server{cl.masters[0], cl.masters[1], cl.masters[2], cl.replica}
}

func (cl *testCluster) addrs() []string {
	var a []string
	for _, n := range cl.nodes() {
		a = append(a, n.Addr())
	}
	return a
}

// client returns a ClusterClient with go-redis's defaults, but for
// ContextTimeoutEnabled, which goredis requires.
func (cl *testCluster) client(t *testing.T) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// keyOn returns a key (with prefix) whose slot master addr serves.
func keyOn(t *testing.T, c *redis.ClusterClient, prefix, addr string) string {
	t.Helper()
	for i := range 10000 {
		k := fmt.Sprintf("%s%d", prefix, i)
		m, err := c.MasterForKey(t.Context(), k)
		require.NoError(t, err)
		if m.Options().Addr == addr {
			return k
		}
	}
	t.Fatalf("no key on %s", addr)
	return ""
}

// role returns a server's replication role ("master", "slave"), or "" if
// it does not answer.
func role(ctx context.Context, c *redis.Client) string {
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	s, _ := v[0].(string)
	return s
}
