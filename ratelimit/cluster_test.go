package ratelimit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/ratelimit"
)

// TestLimiter_cluster runs the policies through a go-redis ClusterClient
// against a redis-server in cluster mode that owns every slot. Redis then
// enforces Cluster's rules on every script: all its KEYS in one slot
// (CROSSSLOT otherwise), so a call that checks a policy and those it
// includes works only because the actor's hash is the keys' hash tag.
//
// TODO(cluster): run it on the 3-master helper (internal/redistest, branch
// bus) once that lands on main.
func TestLimiter_cluster(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	ctx := t.Context()
	admin := srv.Client(t)
	require.NoError(t, admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err())
	require.Eventually(t, func() bool {
		info, err := admin.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, 10*time.Second, 10*time.Millisecond)
	// Two keys of different slots in one script: Redis refuses it.
	err := admin.Eval(ctx, "return 1", []string{"{a}x", "{b}x"}).Err()
	require.ErrorContains(t, err, "CROSSSLOT")

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cc.Close() })
	all := ratelimit.Policy{Name: "admin_all", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(100, 10*time.Minute)}}
	roles := ratelimit.Policy{Name: "roles", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}, Include: []string{"admin_all"}}
	expert := ratelimit.Policy{Name: "expert", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(20, time.Hour)}, Include: []string{"admin_all"}}
	gcra := ratelimit.Policy{Name: "gcra", Algorithm: ratelimit.GCRA, Limits: []ratelimit.Limit{ratelimit.Per(10, time.Hour), ratelimit.Per(20, 24*time.Hour)}, Include: []string{"admin_all"}}
	l := newLimiter(t, cc, nil, all, roles, expert, gcra)
	for _, actor := range []string{"admin:1", "admin:2", "admin:3"} {
		for range 5 {
			require.True(t, allow(t, l, "roles", actor, 1).Allowed)
		}
		d := allow(t, l, "roles", actor, 1)
		require.False(t, d.Allowed)
		require.Equal(t, ratelimit.SourceRedis, d.Source, "a Redis error became a fallback")
		d = allow(t, l, "expert", actor, 3)
		require.True(t, d.Allowed)
		require.Equal(t, 92, d.Windows[1].Remaining)
		d = allow(t, l, "gcra", actor, 2)
		require.True(t, d.Allowed)
		require.Equal(t, 90, d.Windows[2].Remaining)
	}
	require.Zero(t, l.Stats().Fallbacks())
}
