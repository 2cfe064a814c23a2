package tier_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tier"
)

var errDB = errors.New("db down")

func TestCache_FailSafe_ServesStaleWhenOriginFails(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	rec := &recorder{}
	c := newCache(t, &tier.Options[string]{
		Clock: clock, TTL: time.Minute, Jitter: tier.NoJitter, Observer: rec,
		FailSafe: time.Hour, FailSafeThrottle: 10 * time.Second,
	})
	var failing atomic.Bool
	var attempts atomic.Int64
	load := func(_ context.Context, key string) (string, error) {
		attempts.Add(1)
		if failing.Load() {
			return "", errDB
		}
		return "v:" + key, nil
	}
	_, err := c.GetOrLoad(t.Context(), "warm", load)
	require.NoError(t, err)
	// The flight's L1 write is asynchronous to its callers.
	require.Eventually(t, func() bool { _, ok := c.GetIfPresent("warm"); return ok }, 5*time.Second, time.Millisecond)
	failing.Store(true)
	clock.Advance(2 * time.Minute) // past the fresh life, inside the fail-safe window

	before := attempts.Load()
	for i := range 100 {
		v, err := c.GetOrLoad(t.Context(), "warm", load)
		require.NoError(t, err, "call %d", i)
		require.Equal(t, "v:warm", v)
	}
	require.Equal(t, before+1, attempts.Load(), "one origin attempt per key per throttle window")
	require.EqualValues(t, 100, c.Stats().StaleServed)
	require.Positive(t, rec.Count(tier.EventStaleServed))

	clock.Advance(11 * time.Second) // the throttle window is over: one more attempt
	_, err = c.GetOrLoad(t.Context(), "warm", load)
	require.NoError(t, err)
	require.Equal(t, before+2, attempts.Load())

	// A key without a stale value fails. (There is no L2 and the origin
	// fails at once: nothing here could make it slow, so no time bound.)
	_, err = c.GetOrLoad(t.Context(), "cold", load)
	require.ErrorIs(t, err, errDB)

	// Past the fail-safe deadline the error comes through.
	clock.Advance(2 * time.Hour)
	_, err = c.GetOrLoad(t.Context(), "warm", load)
	require.ErrorIs(t, err, errDB)
}

func TestCache_SoftTimeout(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newCache(t, &tier.Options[string]{
		Clock: clock, TTL: time.Minute, Jitter: tier.NoJitter,
		FailSafe: time.Hour, SoftTimeout: 20 * time.Millisecond, LoadTimeout: 10 * time.Second,
	})
	var version atomic.Int64
	release := make(chan struct{})
	load := func(context.Context, string) (string, error) {
		if version.Add(1) > 1 {
			<-release // the second load is slow
		}
		return fmt.Sprint(version.Load()), nil
	}
	v, err := c.GetOrLoad(t.Context(), "k", load)
	require.NoError(t, err)
	require.Equal(t, "1", v)
	require.Eventually(t, func() bool { _, ok := c.GetIfPresent("k"); return ok }, 5*time.Second, time.Millisecond)
	clock.Advance(2 * time.Minute)

	// The second load blocks until release is closed below: the answer
	// can only be the soft timeout's.
	v, err = c.GetOrLoad(t.Context(), "k", load)
	require.NoError(t, err)
	require.Equal(t, "1", v, "the stale value after the soft timeout")
	close(release) // the load goes on and updates the tiers when it ends
	require.Eventually(t, func() bool {
		v, err := c.GetOrLoad(t.Context(), "k", load)
		return err == nil && v == "2"
	}, 5*time.Second, time.Millisecond)

	// Without a stale value, the hard timeout applies.
	h := newCache(t, &tier.Options[string]{FailSafe: time.Hour, SoftTimeout: time.Millisecond, LoadTimeout: 50 * time.Millisecond})
	_, err = h.GetOrLoad(t.Context(), "k", func(ctx context.Context, _ string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestCache_RefreshAhead_HotKeyNeverWaits(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newCache(t, &tier.Options[int]{Clock: clock, TTL: time.Minute, Jitter: tier.NoJitter, RefreshAhead: 0.8})
	var loads atomic.Int64
	inLoad := make(chan struct{}, 100)
	load := func(context.Context, string) (int, error) {
		n := loads.Add(1)
		inLoad <- struct{}{}
		return int(n), nil
	}
	ran := func() {
		select {
		case <-inLoad:
		case <-time.After(5 * time.Second):
			t.Fatal("no load ran")
		}
	}
	_, err := c.GetOrLoad(t.Context(), "hot", load)
	require.NoError(t, err)
	ran()
	require.Eventually(t, func() bool { _, ok := c.GetIfPresent("hot"); return ok }, 5*time.Second, time.Millisecond)
	missesAfterWarmUp := c.Stats().Misses
	for round := 1; round <= 5; round++ {
		clock.Advance(50 * time.Second) // past 80% of the entry's life, still fresh
		// A hot key: hits keep coming until one starts the refresh (a hit
		// that finds the previous refresh still finishing does not).
		refreshed := false
		for !refreshed {
			v, err := c.GetOrLoad(t.Context(), "hot", load)
			require.NoError(t, err)
			// The hit answers at once: with the current value, or the
			// refreshed one once the refresh is in.
			require.Contains(t, []int{round, round + 1}, v)
			select {
			case <-inLoad:
				refreshed = true
			case <-time.After(time.Millisecond):
			}
		}
		require.Eventually(t, func() bool { // and its L1 write is visible
			v, ok := c.GetIfPresent("hot")
			return ok && v == round+1
		}, 5*time.Second, time.Millisecond)
	}
	require.Equal(t, missesAfterWarmUp, c.Stats().Misses, "no caller waited on a load after warm-up")
	require.EqualValues(t, 5, c.Stats().Refreshes)
}

func TestCache_MaxConcurrentLoads(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[int]{MaxConcurrentLoads: 4})
	var running, peak atomic.Int64
	load := func(context.Context, string) (int, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		return 1, nil
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.GetOrLoad(context.Background(), fmt.Sprint(i%50), load)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int64(4))
	require.EqualValues(t, 50, c.Stats().Loads, "one load per distinct key")
}

func TestCache_FailSafe_ThrottlesFailingKeysWithoutStale(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{FailSafe: time.Hour, FailSafeThrottle: time.Hour})
	var attempts atomic.Int64
	load := func(context.Context, string) (string, error) {
		attempts.Add(1)
		return "", errDB
	}
	for range 20 {
		_, err := c.GetOrLoad(t.Context(), "cold", load)
		require.ErrorIs(t, err, errDB, "the error still reaches every caller")
	}
	require.EqualValues(t, 1, attempts.Load(), "one origin attempt per key per throttle window")
	require.NoError(t, c.Delete(t.Context(), "cold")) // an invalidation ends the window
	v, err := c.GetOrLoad(t.Context(), "cold", func(context.Context, string) (string, error) { return "ok", nil })
	require.NoError(t, err)
	require.Equal(t, "ok", v)

	// Without FailSafe, errors are not shared: every call tries again.
	plain := newCache(t, &tier.Options[string]{})
	attempts.Store(0)
	for range 5 {
		_, err := plain.GetOrLoad(t.Context(), "cold", load)
		require.ErrorIs(t, err, errDB)
	}
	require.EqualValues(t, 5, attempts.Load())
}
