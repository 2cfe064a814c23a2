package ratelimit_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/ratelimit"
)

// TestLimiter_cluster runs the policies on a 3-master Redis Cluster through
// a go-redis ClusterClient. Redis enforces Cluster's rules on every script
// (all its KEYS in one slot, CROSSSLOT otherwise), so a call that checks a
// policy and those it includes works only because the actor's hash is its
// keys' hash tag; and actors spread over the masters.
func TestLimiter_cluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, &redistest.ClusterOptions{ReplicasPerMaster: redistest.NoReplicas})
	cc := c.Client(t)
	ctx := t.Context()
	// Two keys of different slots in one script: Redis refuses it.
	require.ErrorContains(t, cc.Eval(ctx, "return 1", []string{"{a}x", "{b}x"}).Err(), "CROSSSLOT")

	all := ratelimit.Policy{Name: "admin_all", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(100, 10*time.Minute)}}
	roles := ratelimit.Policy{Name: "roles", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}, Include: []string{"admin_all"}}
	expert := ratelimit.Policy{Name: "expert", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(20, time.Hour)}, Include: []string{"admin_all"}}
	gcra := ratelimit.Policy{Name: "gcra", Algorithm: ratelimit.GCRA, Limits: []ratelimit.Limit{ratelimit.Per(10, time.Hour), ratelimit.Per(20, 24*time.Hour)}, Include: []string{"admin_all"}}
	// Two instances, as two application instances.
	ls := []*ratelimit.Limiter{newLimiter(t, cc, nil, all, roles, expert, gcra), newLimiter(t, cc, nil, all, roles, expert, gcra)}
	for a := range 12 {
		actor := "admin:" + strconv.Itoa(a)
		for i := range 5 {
			require.True(t, allow(t, ls[i%2], "roles", actor, 1).Allowed)
		}
		d := allow(t, ls[1], "roles", actor, 1)
		require.False(t, d.Allowed)
		require.Equal(t, ratelimit.SourceRedis, d.Source, "a Redis error became a fallback")
		d = allow(t, ls[0], "expert", actor, 3)
		require.True(t, d.Allowed)
		require.Equal(t, 92, d.Windows[1].Remaining)
		d = allow(t, ls[1], "gcra", actor, 2)
		require.True(t, d.Allowed)
		require.Equal(t, 90, d.Windows[2].Remaining)
	}
	for _, l := range ls {
		require.Zero(t, l.Stats().Fallbacks())
	}
	used := 0
	for _, m := range c.Masters() {
		n, err := m.Client(t).DBSize(ctx).Result()
		require.NoError(t, err)
		if n > 0 {
			used++
		}
	}
	require.GreaterOrEqual(t, used, 2, "12 actors' keys all on one master")
}
