package tier_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// TestCache_Failover_UndoneDeleteNeverServed: a Delete that the master
// acknowledged never reached its replica, and the replica is promoted: the
// failover undid the Delete, and L2 holds the old value again. Both
// instances notice the new master (its run_id and replication id), drop
// L1 and move the namespace to its next epoch, so after that neither ever
// serves the deleted value. Before, both served it until its TTL.
func TestCache_Failover_UndoneDeleteNeverServed(t *testing.T) {
	t.Parallel()
	primary, replica := redistest.Start(t), redistest.Start(t)
	link := faultproxy.New(t, primary.Addr()) // the replication link
	admin := replica.Client(t)
	ctx := t.Context()
	_, port, err := net.SplitHostPort(link.Addr())
	require.NoError(t, err)
	require.NoError(t, admin.Do(ctx, "REPLICAOF", "127.0.0.1", port).Err())
	require.Eventually(t, func() bool {
		info, err := admin.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, 10*time.Second, 10*time.Millisecond, "the replica is in sync")

	// The instances' clients dial whichever server is the master, as a
	// Sentinel client would after the switch.
	var master atomic.Pointer[string]
	addr := primary.Addr()
	master.Store(&addr)
	client := func() *redis.Client {
		o := primary.Options()
		o.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, *master.Load())
		}
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ns := testNamespace(t)
	instance := func() *tier.Cache[string] {
		return newCache(t, &tier.Options[string]{
			Namespace: ns, L2: goredis.Must(client(), nil), Invalidator: runBus(t, client(), nil),
			L2Timeout: time.Second,
		})
	}
	a, b := instance(), instance()
	waitSubscribed(t, primary.Client(t), ns, 2)

	require.NoError(t, a.Set(ctx, "k", "v1", 0))
	v, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	require.Eventually(t, func() bool { return admin.Exists(ctx, a.Key("k")).Val() == 1 },
		10*time.Second, 5*time.Millisecond, "the replica has the value")

	link.Blackhole() // the replica hears nothing more
	require.NoError(t, a.Delete(ctx, "k"), "the master acknowledged the Delete")
	primary.Kill()
	require.NoError(t, admin.Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	promoted := replica.Addr()
	master.Store(&promoted)
	require.EqualValues(t, 1, admin.Exists(ctx, a.Key("k")).Val(), "the failover undid the Delete")

	for _, c := range []*tier.Cache[string]{a, b} {
		require.Eventually(t, func() bool {
			s := c.Stats()
			return s.L2Failovers == 1 && s.EpochMoves >= 1 && !s.EpochMoveOwed
		}, 10*time.Second, 5*time.Millisecond, "the instance noticed the failover and moved the epoch")
	}
	neverServes(t, a, "k", "v1", "this instance")
	neverServes(t, b, "k", "v1", "another instance")
	require.Equal(t, a.Key("k"), b.Key("k"), "both instances moved to the same epoch")
}
