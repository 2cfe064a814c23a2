package session_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/session"
	"github.com/tiercache/tiercache/tier"
)

// TestManager_redisDown: with Redis killed, a session in L1 is served
// (its activity not recorded, counted) until it is StaleBound old, then
// reads fail closed; writes are refused at once. Every fallback is counted
// and reported.
func TestManager_redisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	const staleBound = 2 * time.Second
	n := newNode(t, newClient(t, srv.Options(), ""), newClient(t, srv.Options(), ""), nodeOpts{
		staleBound: staleBound,
		o: session.Options{
			IdleTimeout: 10 * time.Second, TouchFraction: 0.01, L1TTL: time.Hour,
			// A killed Redis fails calls at once: the timeout stays
			// newNode's long one, so a loaded machine's slow call before
			// the kill is not an outage.
			BreakerFailures: 2, BreakerCooldown: 100 * time.Millisecond,
		},
	})
	ctx := t.Context()
	tok, err := n.m.Create(ctx, "user:1", session.Client{}, map[string]string{"k": "v"})
	require.NoError(t, err)
	// Read it into L1, then let a touch become due. On a loaded machine
	// the bus's 50 ms heartbeat can be late past DeadAfter, which drops L1
	// (rightly): then read it again, so that L1 holds it when Redis dies.
	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 50, "the bus kept dropping L1")
		drops := n.rec.Count(tier.EventL1Dropped)
		_, err = n.m.Get(ctx, tok)
		require.NoError(t, err)
		time.Sleep(150 * time.Millisecond) // stands for the time to the next request: a touch is due
		if n.rec.Count(tier.EventL1Dropped) == drops {
			break
		}
	}
	srv.Kill()

	s, err := n.m.Get(ctx, tok)
	require.NoError(t, err, "served from L1 while Redis is down (within StaleBound of its read)")
	require.Equal(t, "v", mustValue(t, s, "k"))
	require.NotZero(t, n.m.Stats().TouchSkipped, "its activity could not be recorded")

	_, err = n.m.Create(ctx, "user:2", session.Client{}, nil)
	require.ErrorIs(t, err, session.ErrUnavailable)
	_, err = n.m.Update(ctx, tok, session.Update{Set: map[string]string{"k": "w"}})
	require.ErrorIs(t, err, session.ErrUnavailable)
	_, err = n.m.RevokeAll(ctx, "user:1")
	require.ErrorIs(t, err, session.ErrUnavailable)
	require.EqualValues(t, 3, n.m.Stats().WritesRefused)
	// Writes Redis surely did not run (the connection was refused, not
	// timed out) drop nothing: the session is still served from L1.
	s, err = n.m.Get(ctx, tok)
	require.NoError(t, err, "the refused writes left the L1 copy")
	require.Equal(t, "v", mustValue(t, s, "k"))

	// Past StaleBound the copy is no longer trusted: fail closed.
	require.Eventually(t, func() bool {
		_, err := n.m.Get(ctx, tok)
		return err != nil
	}, 10*time.Second, 5*time.Millisecond)
	_, err = n.m.Get(ctx, tok)
	require.ErrorIs(t, err, session.ErrUnavailable)
	st := n.m.Stats()
	require.NotZero(t, st.ReadsRefused)
	require.NotZero(t, st.BreakerOpens)
	require.Equal(t, st.TouchSkipped+st.ReadsRefused+st.WritesRefused, st.Fallbacks())
	fb := n.ev.of(session.EventFallback)
	require.NotEmpty(t, fb)
	for _, e := range fb {
		require.Contains(t, []string{session.ReasonRedisError, session.ReasonRedisTimeout, session.ReasonBreakerOpen}, e.Reason)
		require.Contains(t, []string{"touch", "read", "write"}, e.Op)
	}

	// Redis comes back empty (no persistence): the session is gone, and
	// the Manager says so (not "unavailable") once the breaker lets a
	// probe through.
	srv.Restart()
	require.Eventually(t, func() bool {
		_, err := n.m.Get(ctx, tok)
		return err != nil && !errorsIsUnavailable(err)
	}, 10*time.Second, 10*time.Millisecond)
	_, err = n.m.Create(ctx, "user:1", session.Client{}, nil)
	require.NoError(t, err)
}

func errorsIsUnavailable(err error) bool { return err != nil && errorIs(err, session.ErrUnavailable) }
