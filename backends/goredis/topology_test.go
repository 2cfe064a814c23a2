package goredis_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestBackend_Cluster_FollowsKilledMaster: a master is SIGKILLed and its
// replica promoted. With go-redis's defaults a ClusterClient keeps dialling
// the dead master until its next periodic slot-map reload (60 s); the
// Backend asks for a reload on connection errors, so writes to the dead
// master's slots work again within 2 s of the promotion (one rate-limited
// reload, 250 ms, plus go-redis's own retries).
func TestBackend_Cluster_FollowsKilledMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	cl := redistest.StartCluster(t, nil)
	cc := cl.Client(t) // go-redis's defaults
	be := goredis.Must(cc, nil)
	ctx := t.Context()
	masters := cl.Masters()
	key := keyOn(t, cc, "k:", masters[0].Addr())
	other := keyOn(t, cc, "o:", masters[1].Addr())
	require.Equal(t, masters[0].Addr(), be.Shard(key), "Shard names the slot's master")
	require.Equal(t, masters[1].Addr(), be.Shard(other))
	require.NoError(t, be.Set(ctx, key, []byte("v1"), time.Minute))

	replicaSrv := cl.ReplicaOf(masters[0])
	require.NotNil(t, replicaSrv)
	replica := replicaSrv.Client(t)
	masters[0].Kill()
	killed := time.Now()
	var promoted time.Time
	require.Eventually(t, func() bool {
		if promoted.IsZero() && role(ctx, replica) == "master" {
			promoted = time.Now()
		}
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return be.Set(c, key, []byte("v2"), time.Minute) == nil
	}, 30*time.Second, 20*time.Millisecond, "writes to the dead master's slots never came back")
	back := time.Now()
	require.False(t, promoted.IsZero(), "a write succeeded before the replica was promoted")
	t.Logf("replica promoted %v after the kill; writes back %v after the promotion",
		promoted.Sub(killed).Round(time.Millisecond), back.Sub(promoted).Round(time.Millisecond))
	require.Less(t, back.Sub(promoted), 2*time.Second, "writes came back within 2 s of the promotion")
	require.Equal(t, replicaSrv.Addr(), be.Shard(key), "the key's shard is the promoted replica")
	v, err := be.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "v2", string(v))
}

// keyOn returns a key (with prefix) whose slot master addr serves.
func keyOn(t *testing.T, c *redis.ClusterClient, prefix, addr string) string {
	t.Helper()
	for i := range 10000 {
		k := prefix + strconv.Itoa(i)
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
