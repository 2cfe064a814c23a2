package tier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// runBus returns a pub/sub invalidation bus over rdb, running until t
// ends (on t.Context(), which ends before the cleanups run).
func runBus(t *testing.T, rdb redis.UniversalClient, o *invalidate.Options) *invalidate.Bus {
	t.Helper()
	bus, err := invalidate.New(rdb, o)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- bus.Run(t.Context()) }()
	t.Cleanup(func() { require.NoError(t, <-done) })
	return bus
}

// waitSubscribed waits until n buses listen on namespace's channel.
func waitSubscribed(t *testing.T, rdb redis.UniversalClient, namespace string, n int) {
	t.Helper()
	ch := invalidate.Channel(namespace)
	require.Eventually(t, func() bool {
		subs, err := rdb.PubSubNumSub(t.Context(), ch).Result()
		return err == nil && subs[ch] == int64(n)
	}, 10*time.Second, time.Millisecond, "the buses did not subscribe")
}

func testNamespace(t *testing.T) string {
	return "o-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}

// neverServes checks that c does not return old for key, now or until it
// answers ErrNotFound (in between, ErrL2 is allowed: the epoch is being
// re-read).
func neverServes(t *testing.T, c *tier.Cache[string], key, old, who string) {
	t.Helper()
	var served atomic.Bool
	require.Eventually(t, func() bool {
		v, err := c.Get(t.Context(), key)
		if err == nil && v == old {
			served.Store(true)
			return true
		}
		return errors.Is(err, tier.ErrNotFound)
	}, 10*time.Second, 5*time.Millisecond, "%s: Get(%s) never answered ErrNotFound", who, key)
	require.False(t, served.Load(), "%s served %q for %s after its Delete", who, old, key)
}

// requireL2Err checks that err reports an L2 that could not be asked, and
// not an absent key.
func requireL2Err(t *testing.T, err error, msg string) {
	t.Helper()
	require.ErrorIs(t, err, tier.ErrL2, msg)
	require.NotErrorIs(t, err, tier.ErrNotFound, msg)
}

// TestCache_Get_L2UnreachableIsNotNotFound (finding 6): Get, which has no
// loader to fall back on, reports an L2 it could not ask (connection cut,
// breaker open, breaker still open after the network is back, epoch not
// known) as ErrL2, never as ErrNotFound; GetOrLoad still falls back to its
// loader.
func TestCache_Get_L2UnreachableIsNotNotFound(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := faultproxy.New(t, srv.Addr())
	rdb := l2Client(t, srv, p.Addr())
	o := tier.Options[string]{L2Timeout: 500 * time.Millisecond, BreakerFailures: 2, BreakerCooldown: time.Hour}
	c := over(t, rdb, o)
	ctx := t.Context()

	_, err := c.Get(ctx, "absent")
	require.ErrorIs(t, err, tier.ErrNotFound, "a key L2 does not have")
	require.NotErrorIs(t, err, tier.ErrL2)

	p.Cut()
	_, err = c.Get(ctx, "k:cut")
	requireL2Err(t, err, "connection cut")

	require.Eventually(t, func() bool {
		_, _ = c.Get(ctx, "k:cut")
		return c.Stats().Breaker == tier.BreakerOpen
	}, 10*time.Second, 10*time.Millisecond)
	_, err = c.Get(ctx, "k:open")
	requireL2Err(t, err, "breaker open")

	p.Heal()
	_, err = c.Get(ctx, "k:healed")
	requireL2Err(t, err, "breaker still open after the network is back")
	v, err := c.GetOrLoad(ctx, "k:load", func(context.Context, string) (string, error) { return "loaded", nil })
	require.NoError(t, err, "GetOrLoad falls back to the loader")
	require.Equal(t, "loaded", v)

	// A cache that starts while L2 is cut cannot name its keys (the epoch
	// is not read yet): Get says so.
	p.Cut()
	o.Namespace = "f-" + t.Name() + "-2"
	c2 := over(t, rdb, o)
	_, err = c2.Get(ctx, "k")
	requireL2Err(t, err, "epoch unknown")
	p.Heal()
	require.Eventually(t, func() bool {
		_, err := c2.Get(ctx, fmt.Sprintf("k:%d", time.Now().UnixNano()))
		return err != nil && !isL2Err(err)
	}, 10*time.Second, 10*time.Millisecond, "once the epoch is read, a missing key is ErrNotFound again")
	_, err = c2.Get(ctx, "k")
	require.ErrorIs(t, err, tier.ErrNotFound)
}

func isL2Err(err error) bool { return errors.Is(err, tier.ErrL2) }

// TestCache_Delete_NotLostWhenReplayOverflows (finding 5): with room for
// one pending invalidation, three Deletes made while the connection is cut
// cannot all be kept. Nothing is dropped silently: the namespace owes a
// move to its next epoch, makes it once L2 answers and tells the other
// instances, so neither this instance nor another ever serves a deleted
// value from L2 or L1. Before, the replayer took the batch out of the queue
// and dropped it when re-adding failed, and the keys past the bound were
// only dropped from this instance's L1: L2 kept the old bytes for every
// instance until their TTL.
func TestCache_Delete_NotLostWhenReplayOverflows(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := faultproxy.New(t, srv.Addr())
	rdbA := l2Client(t, srv, p.Addr()) // A's L2 and bus go through the proxy
	rdbB := l2Client(t, srv, srv.Addr())
	ns := testNamespace(t)
	o := tier.Options[string]{Namespace: ns, MaxPendingInvalidations: 1, BreakerCooldown: 200 * time.Millisecond, L2Timeout: time.Second}
	oA, oB := o, o
	oA.Invalidator = runBus(t, rdbA, nil)
	oB.Invalidator = runBus(t, rdbB, nil)
	a, b := over(t, rdbA, oA), over(t, rdbB, oB)
	waitSubscribed(t, rdbB, ns, 2)
	ctx := t.Context()

	keys := []string{"k", "x", "y"}
	for _, k := range keys {
		require.NoError(t, a.Set(ctx, k, "old:"+k, 0))
		v, err := b.Get(ctx, k) // B has it in L1 too
		require.NoError(t, err)
		require.Equal(t, "old:"+k, v)
	}

	p.Cut()
	for _, k := range keys {
		requireL2Err(t, a.Delete(ctx, k), "Delete while the connection is cut")
	}
	s := a.Stats()
	require.True(t, s.EpochMoveOwed, "the Deletes past the bound made the namespace owe an epoch move")
	require.Positive(t, s.InvalidationOverflows)
	_, err := a.Get(ctx, "k")
	requireL2Err(t, err, "while the move is owed, L2 is not read")

	heard := b.Stats().InvalidationsReceived
	p.Heal()
	require.Eventually(t, func() bool {
		s := a.Stats()
		return !s.EpochMoveOwed && s.EpochMoves == 1 && s.PendingInvalidations == 0
	}, 10*time.Second, 5*time.Millisecond, "the namespace moved to its next epoch once L2 answered")
	require.Eventually(t, func() bool { return b.Stats().InvalidationsReceived > heard && b.Key("k") == a.Key("k") },
		10*time.Second, 5*time.Millisecond, "B heard that the namespace was cleared, and uses the new epoch")
	for _, k := range keys {
		neverServes(t, a, k, "old:"+k, "this instance")
		neverServes(t, b, k, "old:"+k, "another instance")
	}
}
