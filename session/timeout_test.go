package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/session"
)

// TestManager_idleTimeout: a session that sees no activity for the idle
// timeout ends; one that keeps being used does not, and its activity is
// written at most once per touch interval, whichever instance serves it.
func TestManager_idleTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("long test (real idle timeouts); run without -short")
	}
	t.Parallel()
	const idle = 600 * time.Millisecond
	_, a, b := twoNodes(t, nodeOpts{o: session.Options{IdleTimeout: idle, TouchFraction: 0.25, L1TTL: time.Hour}})
	ctx := t.Context()
	active, err := a.m.Create(ctx, "user:1", session.Client{}, nil)
	require.NoError(t, err)
	idleTok, err := a.m.Create(ctx, "user:1", session.Client{}, nil)
	require.NoError(t, err)
	_, err = b.m.Get(ctx, idleTok)
	require.NoError(t, err)

	// Requests every 20 ms for 3 idle windows, alternating instances.
	start := time.Now()
	reqs := 0
	for time.Since(start) < 3*idle {
		n := []*node{a, b}[reqs%2]
		_, err := n.m.Get(ctx, active)
		require.NoError(t, err, "an active session stays alive (request %d)", reqs)
		reqs++
		time.Sleep(20 * time.Millisecond) // stands for the time between requests
	}
	writes := a.m.Stats().TouchWrites + b.m.Stats().TouchWrites
	t.Logf("%d requests over %v: %d activity writes (touch interval %v)", reqs, time.Since(start), writes, idle/4)
	require.LessOrEqual(t, writes, uint64(time.Since(start)/(idle/4))+1, "at most one write per touch interval")
	require.GreaterOrEqual(t, writes, uint64(2))

	// The idle one ended, though B's L1 copy would live an hour: B's own
	// deadline check refuses it.
	before := b.m.Stats()
	_, err = b.m.Get(ctx, idleTok)
	requireEnded(t, err, before, b.m.Stats())
	_, err = a.m.Get(ctx, idleTok)
	require.ErrorIs(t, err, session.ErrNotFound)
	list, err := a.m.List(ctx, "user:1")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

// requireEnded checks err, the answer to a read of a session that has
// ended, given the Manager's Stats before and after the read. A read that
// L1 answered alone must be refused by the instance's own deadline check
// (ErrExpired). One that asked Redis may find the session gone there
// instead (ErrNotFound): a load, after the bus (slow on a loaded machine:
// a silence past DeadAfter, a resubscription) made L1 stop vouching for
// the copy, or a touch, when the instance's clock offset put the deadline
// a little later than Redis's.
func requireEnded(t *testing.T, err error, before, after session.Stats) {
	t.Helper()
	if after.Loads == before.Loads && after.Touches == before.Touches {
		require.ErrorIs(t, err, session.ErrExpired, "answered from L1")
		return
	}
	t.Logf("the read asked Redis (loads %d, touches %d): %v", after.Loads-before.Loads, after.Touches-before.Touches, err)
	if !errors.Is(err, session.ErrNotFound) {
		require.ErrorIs(t, err, session.ErrExpired)
	}
}

// TestManager_absoluteTimeout: activity does not extend a session past its
// absolute timeout, and neither does Renew.
func TestManager_absoluteTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("long test (real timeouts); run without -short")
	}
	t.Parallel()
	const abs = 700 * time.Millisecond
	_, a, _ := twoNodes(t, nodeOpts{o: session.Options{IdleTimeout: abs, AbsoluteTimeout: abs, TouchFraction: 0.1, L1TTL: time.Hour}})
	ctx := t.Context()
	tok, err := a.m.Create(ctx, "user:1", session.Client{}, nil)
	require.NoError(t, err)
	start := time.Now()
	renewed := false
	for {
		before := a.m.Stats()
		_, err := a.m.Get(ctx, tok)
		if err != nil {
			requireEnded(t, err, before, a.m.Stats())
			break
		}
		if !renewed && time.Since(start) > abs/2 {
			tok, err = a.m.Renew(ctx, tok)
			require.NoError(t, err)
			renewed = true
		}
		require.Less(t, time.Since(start), 10*abs, "the session never ended")
		time.Sleep(20 * time.Millisecond) // stands for the time between requests
	}
	require.GreaterOrEqual(t, time.Since(start), abs-50*time.Millisecond, "ended no sooner than the absolute timeout (less the clock offset)")
	require.True(t, renewed)
}

// TestManager_cluster runs the whole life of sessions on a 3-master Redis
// Cluster, which refuses a script whose keys are in several slots
// (CROSSSLOT): every operation of one user runs in the user's slot, and
// users spread over the masters.
func TestManager_cluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, &redistest.ClusterOptions{ReplicasPerMaster: redistest.NoReplicas})
	mk := func() *node {
		return newNode(t, c.Client(t), c.Client(t), nodeOpts{o: session.Options{L1TTL: time.Hour}})
	}
	a, b := mk(), mk()
	ctx := t.Context()
	require.ErrorContains(t, c.Client(t).Eval(ctx, "return 1", []string{"{a}x", "{b}x"}).Err(), "CROSSSLOT")
	for u := range 8 {
		user := "user:" + string(rune('a'+u))
		toks := loginAll(t, a, b, user, 3)
		_, err := a.m.Update(ctx, toks[0], session.Update{Set: map[string]string{"k": "v"}})
		require.NoError(t, err)
		next, err := b.m.Renew(ctx, toks[0])
		require.NoError(t, err)
		list, err := a.m.List(ctx, user)
		require.NoError(t, err)
		require.Len(t, list, 3)
		n, err := a.m.RevokeOthers(ctx, next)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		n, err = b.m.RevokeAll(ctx, user)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, err = b.m.Get(ctx, next)
		require.ErrorIs(t, err, session.ErrNotFound)
	}
	for _, n := range []*node{a, b} {
		require.Zero(t, n.m.Stats().Fallbacks())
	}
}
