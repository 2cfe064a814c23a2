package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/ratelimit"
)

// outagePolicies are one policy per outage mode, with windows long enough
// that nothing leaves them during a test, and quotas large enough that a
// burst does not use them up before the outage (an actor Redis denied is
// answered by the denial cache, outage or not), and a small one.
func outagePolicies() []ratelimit.Policy {
	log := func(name string, n int, mode ratelimit.OutageMode, share float64) ratelimit.Policy {
		return ratelimit.Policy{Name: name, Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(n, time.Minute)},
			Outage: mode, LocalShare: share}
	}
	return []ratelimit.Policy{
		log("closed", 100000, ratelimit.FailClosed, 0),
		log("local", 40, ratelimit.Local, 0.5), // 20 per instance
		log("open", 100000, ratelimit.FailOpen, 0),
		log("small", 20, ratelimit.FailClosed, 0),
	}
}

// outageOptions make an outage quick to detect and to recover from. A
// killed Redis fails calls at once (connection refused or reset), so the
// timeout stays newLimiter's long one: a call that a loaded machine makes
// slow is not an outage decision.
func outageOptions(obs ratelimit.Observer) *ratelimit.Options {
	return &ratelimit.Options{
		BreakerFailures: 2,
		BreakerCooldown: 100 * time.Millisecond,
		Observer:        obs,
	}
}

// tally counts one instance's decisions of one policy.
type tally struct {
	mu       sync.Mutex
	bySource map[ratelimit.Source][2]int // [denied, allowed]
}

func (t *tally) add(d ratelimit.Decision) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.bySource[d.Source]
	if d.Allowed {
		c[1]++
	} else {
		c[0]++
	}
	t.bySource[d.Source] = c
}

func (t *tally) get(s ratelimit.Source) (denied, allowed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.bySource[s]
	return c[0], c[1]
}

// fallbackEvents counts what the Observer heard about fallbacks.
type fallbackEvents struct {
	n        atomic.Int64
	noReason atomic.Int64
}

func (f *fallbackEvents) Decided(_ context.Context, e ratelimit.Event) {
	if e.Decision.Source.Fallback() {
		f.n.Add(1)
		if e.Reason == "" {
			f.noReason.Add(1)
		}
	}
}

// TestLimiter_outage_killMidBurst kills Redis while two instances burst on
// three policies, one per outage mode, and checks that fail-closed denies,
// the local fallback admits at most its declared share (counting what
// Redis admitted through the same instance before the outage: the local
// limiter is warm), fail-open admits, no error reaches a caller, every
// fallback is counted and reported, and after a restart Redis decides
// again and counts from zero (the restarted server is empty).
func TestLimiter_outage_killMidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	var events [2]fallbackEvents
	limiters := [2]*ratelimit.Limiter{
		newLimiter(t, rdb, outageOptions(&events[0]), outagePolicies()...),
		newLimiter(t, rdb, outageOptions(&events[1]), outagePolicies()...),
	}
	policies := []string{"closed", "local", "open"}
	var tallies [2][3]tally
	for i := range tallies {
		for j := range tallies[i] {
			tallies[i][j].bySource = map[ratelimit.Source][2]int{}
		}
	}

	var (
		decided atomic.Int64 // decisions made by the burst
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for g := range 6 {
		wg.Go(func() {
			inst, pol := g%2, (g/2)%3
			l := limiters[inst]
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := l.Allow(context.Background(), policies[pol], "admin:x")
				if err != nil {
					t.Errorf("a caller saw an error: %v", err)
					return
				}
				tallies[inst][pol].add(d)
				decided.Add(1)
				if d.Source.Fallback() || d.Source == ratelimit.SourceDenialCache {
					// Decisions without a round trip take no time: pace
					// this client so every policy gets its share of the
					// two cores (client pacing, not a wait for anyone).
					time.Sleep(200 * time.Microsecond)
				}
			}
		})
	}
	// Mid-burst: once each policy has been decided on Redis a few times.
	require.Eventually(t, func() bool { return decided.Load() >= 30 }, 10*time.Second, time.Millisecond)
	srv.Kill()
	require.Eventually(t, func() bool {
		for inst := range 2 {
			for pol := range 3 {
				n := 0
				for _, s := range []ratelimit.Source{ratelimit.SourceLocal, ratelimit.SourceFailClosed, ratelimit.SourceFailOpen} {
					d, a := tallies[inst][pol].get(s)
					n += d + a
				}
				if n < 50 {
					return false
				}
			}
		}
		return true
	}, 20*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()

	for inst := range 2 {
		// Fail closed: nothing admitted without Redis.
		_, allowed := tallies[inst][0].get(ratelimit.SourceFailClosed)
		require.Zero(t, allowed)
		// Fail open: everything admitted without Redis.
		denied, allowed := tallies[inst][2].get(ratelimit.SourceFailOpen)
		require.Zero(t, denied)
		require.Positive(t, allowed)
		// Local: at most the share (20) of the quota, less what this
		// instance had Redis admit in the same window.
		_, viaRedis := tallies[inst][1].get(ratelimit.SourceRedis)
		localDenied, localAllowed := tallies[inst][1].get(ratelimit.SourceLocal)
		t.Logf("instance %d, policy local: %d admitted by Redis, then %d admitted and %d denied locally", inst, viaRedis, localAllowed, localDenied)
		require.LessOrEqual(t, localAllowed, max(0, 20-viaRedis))
		require.Positive(t, localDenied)

		st := limiters[inst].Stats()
		seen := 0
		for pol := range 3 {
			for _, s := range []ratelimit.Source{ratelimit.SourceLocal, ratelimit.SourceFailClosed, ratelimit.SourceFailOpen} {
				d, a := tallies[inst][pol].get(s)
				seen += d + a
			}
		}
		require.Equal(t, uint64(seen), st.Fallbacks(), "every fallback is counted")
		require.Equal(t, int64(seen), events[inst].n.Load(), "every fallback is reported")
		require.Zero(t, events[inst].noReason.Load())
		require.Positive(t, st.BreakerSkips, "the breaker opened and spared callers the wait")
		require.Positive(t, st.BreakerOpens)
	}

	// Recovery: Redis decides again, from zero (a restarted Redis is empty).
	srv.Restart()
	require.Eventually(t, func() bool {
		d, err := limiters[0].Allow(t.Context(), "small", "admin:y")
		require.NoError(t, err)
		return d.Source == ratelimit.SourceRedis
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		d, err := limiters[1].Allow(t.Context(), "small", "admin:y")
		require.NoError(t, err)
		return d.Source == ratelimit.SourceRedis
	}, 10*time.Second, 10*time.Millisecond)
	admitted := 0
	for i := range 30 {
		d, err := limiters[i%2].Allow(t.Context(), "small", "admin:z")
		require.NoError(t, err)
		require.NotEqual(t, ratelimit.SourceFailClosed, d.Source)
		if d.Allowed {
			admitted++
		}
	}
	require.Equal(t, 20, admitted)
}

// TestLimiter_outage_pauseResume stops Redis (SIGSTOP: calls time out)
// with some of an actor's quota used, and checks that after it resumes the
// count goes on from where it was: what Redis admitted before the outage
// still counts.
func TestLimiter_outage_pauseResume(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	// The breaker runs on a fake clock, so its cooldown ends when the test
	// says (not while a loaded machine runs the ten calls below), and the
	// timeout is long enough that only the paused Redis misses it.
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	o := outageOptions(nil)
	o.Timeout, o.Clock = 2*time.Second, clock
	l := newLimiter(t, rdb, o, outagePolicies()...)
	for range 12 {
		require.True(t, allow(t, l, "small", "admin:p", 1).Allowed)
	}
	srv.Pause()
	for range 10 {
		d := allow(t, l, "small", "admin:p", 1)
		require.False(t, d.Allowed)
		require.Equal(t, ratelimit.SourceFailClosed, d.Source)
	}
	st := l.Stats()
	require.Equal(t, uint64(2), st.RedisTimeouts, "the breaker opens after two timeouts")
	require.Equal(t, uint64(8), st.BreakerSkips)
	srv.Resume()
	clock.Add(o.BreakerCooldown) // the breaker lets a probe through
	require.Eventually(t, func() bool {
		d := allow(t, l, "small", "admin:p", 1)
		return d.Source == ratelimit.SourceRedis && d.Allowed
	}, 10*time.Second, 10*time.Millisecond)
	// 12 before the outage and 1 after: 7 left, less the timed-out calls
	// that Redis ran when it resumed (they were in its socket buffers): a
	// call that times out may still count on Redis, never the reverse.
	admitted := 0
	for range 10 {
		if allow(t, l, "small", "admin:p", 1).Allowed {
			admitted++
		}
	}
	require.GreaterOrEqual(t, admitted, 7-2)
	require.LessOrEqual(t, admitted, 7)
	d := allow(t, l, "small", "admin:p", 1)
	require.False(t, d.Allowed)
	require.Equal(t, ratelimit.SourceDenialCache, d.Source)
}

// TestLimiter_outage_shortCallerDeadlines: with Redis paused, callers
// whose deadlines are shorter than Timeout get the policy's outage
// decision, and their timeouts open the breaker. Before, each call failed
// with the caller's deadline error, uncounted: the breaker never opened and
// the outage modes never applied.
func TestLimiter_outage_shortCallerDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	o := outageOptions(nil)
	o.Timeout = 80 * time.Millisecond // the callers' 50 ms are more than half of it
	l := newLimiter(t, rdb, o, outagePolicies()...)
	require.True(t, allow(t, l, "open", "a", 1).Allowed)
	srv.Pause()
	defer srv.Resume()
	for range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		d, err := l.AllowN(ctx, "open", "a", 1)
		cancel()
		require.NoError(t, err)
		require.True(t, d.Allowed)
		require.Equal(t, ratelimit.SourceFailOpen, d.Source)
	}
	st := l.Stats()
	require.Equal(t, uint64(2), st.RedisTimeouts, "the breaker opens after two timeouts")
	require.Equal(t, uint64(1), st.BreakerOpens)
}

// TestLimiter_outage_shortBudgetsOpenNothing: Redis stalls (paused here,
// for as long as five calls take) for less than Timeout, and five callers
// with budgets far under Timeout miss their deadlines: each gets the
// outage decision, and the breaker every caller shares stays closed (with
// the first rule, a miss counted once the call had waited 10 ms, and
// these five opened it). A full-budget call then reaches Redis.
func TestLimiter_outage_shortBudgetsOpenNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	o := outageOptions(nil)
	o.Timeout = time.Minute
	l := newLimiter(t, rdb, o, outagePolicies()...)
	require.True(t, allow(t, l, "closed", "a", 1).Allowed)
	srv.Pause()
	for i := range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Millisecond)
		d, err := l.AllowN(ctx, "closed", fmt.Sprint("c", i), 1)
		cancel()
		require.NoError(t, err)
		require.Equal(t, ratelimit.SourceFailClosed, d.Source)
	}
	srv.Resume()
	require.Zero(t, l.Stats().BreakerOpens)
	require.Equal(t, ratelimit.SourceRedis, allow(t, l, "closed", "z", 1).Source)
}

// TestLimiter_outage_cancelledProbe: the half-open breaker's probe is
// cancelled by its caller (its client went away): the next call probes at
// once and finds Redis back. Before, the probe's slot stayed taken for
// another cool-down, and every call in it got the outage mode.
func TestLimiter_outage_cancelledProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	o := outageOptions(nil)
	o.Timeout, o.Clock = 2*time.Second, clock
	l := newLimiter(t, rdb, o, outagePolicies()...)
	srv.Pause()
	for range 2 {
		require.Equal(t, ratelimit.SourceFailClosed, allow(t, l, "closed", "a", 1).Source)
	}
	require.Equal(t, uint64(1), l.Stats().BreakerOpens)
	srv.Resume()
	clock.Add(o.BreakerCooldown) // the next call is the probe
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := l.AllowN(gone, "closed", "a", 1)
	require.ErrorIs(t, err, context.Canceled)
	d := allow(t, l, "closed", "a", 1)
	require.Equal(t, ratelimit.SourceRedis, d.Source, "the next call is a probe, without another cool-down")
	require.True(t, d.Allowed)
}

// TestLimiter_expiredCallerContexts: calls whose contexts have ended
// already get their context's error without a call to Redis, and say
// nothing about it: the breaker stays closed for everyone else. (A caller
// deadline that ends during the call counts against the breaker only once
// the call waited half of Timeout: TestLimiter_outage_shortCallerDeadlines
// and TestLimiter_outage_shortBudgetsOpenNothing.)
func TestLimiter_expiredCallerContexts(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	l := newLimiter(t, rdb, outageOptions(nil), outagePolicies()...)
	expired, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
	defer cancel()
	for range 10 {
		_, err := l.AllowN(expired, "closed", "a", 1)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	require.Zero(t, l.Stats().BreakerOpens)
	d := allow(t, l, "closed", "b", 1)
	require.Equal(t, ratelimit.SourceRedis, d.Source)
}
