package ratelimit_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/ratelimit"
)

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestLimiter_local checks the local limiter alone (no Redis: every call is
// an outage decision) on a fake clock: an exact sliding log of the share.
func TestLimiter_local(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingLog, LocalShare: 0.5,
		Limits: []ratelimit.Limit{ratelimit.Per(10, time.Minute), ratelimit.Per(14, time.Hour)}} // 5/min, 7/h locally
	l := newLimiter(t, nil, &ratelimit.Options{Clock: clock}, p)
	for i := range 5 {
		d := allow(t, l, "p", "a", 1)
		require.True(t, d.Allowed, "call %d", i)
		require.Equal(t, ratelimit.SourceLocal, d.Source)
		clock.Add(time.Second)
	}
	d := allow(t, l, "p", "a", 1)
	require.False(t, d.Allowed)
	require.Equal(t, "p-60s", d.DeniedBy)
	require.Equal(t, 55*time.Second, d.RetryAfter, "the first unit leaves the minute 60 s after it came")
	clock.Add(55 * time.Second)
	d = allow(t, l, "p", "a", 2)
	require.False(t, d.Allowed, "one unit has left the minute, not two")
	require.Equal(t, time.Second, d.RetryAfter)
	require.True(t, allow(t, l, "p", "a", 1).Allowed)
	clock.Add(time.Minute)
	require.True(t, allow(t, l, "p", "a", 1).Allowed) // 7 in the hour
	d = allow(t, l, "p", "a", 1)
	require.False(t, d.Allowed)
	require.Equal(t, "p-3600s", d.DeniedBy)
	st := l.Stats()
	require.Equal(t, uint64(7), st.LocalAllowed)
	require.Equal(t, uint64(3), st.LocalDenied)
	require.Equal(t, uint64(10), st.Fallbacks())
}

// TestLimiter_local_largeQuota checks the local limiter's fixed-window
// counts, used past 1024 units: never more than the share in a rolling
// window, so the previous window still counts until it is two windows old.
func TestLimiter_local_largeQuota(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1e9, 0).Truncate(time.Minute)}
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingWindow, LocalShare: 0.5,
		Limits: []ratelimit.Limit{ratelimit.Per(4000, time.Minute)}} // 2000 locally
	l := newLimiter(t, nil, &ratelimit.Options{Clock: clock}, p)
	require.True(t, allow(t, l, "p", "a", 1500).Allowed)
	clock.Add(50 * time.Second)
	require.True(t, allow(t, l, "p", "a", 500).Allowed)
	require.False(t, allow(t, l, "p", "a", 1).Allowed)
	clock.Add(20 * time.Second) // the next fixed window: the last one still counts
	d := allow(t, l, "p", "a", 1)
	require.False(t, d.Allowed)
	require.Equal(t, 50*time.Second, d.RetryAfter)
	clock.Add(50 * time.Second)
	require.True(t, allow(t, l, "p", "a", 2000).Allowed)
}

// TestLimiter_local_full checks that a local limiter that cannot track one
// more actor denies it, and says why.
func TestLimiter_local_full(t *testing.T) {
	t.Parallel()
	var full int
	var mu sync.Mutex
	obs := ratelimit.ObserverFunc(func(_ context.Context, e ratelimit.Event) {
		if e.Reason == ratelimit.ReasonLocalFull {
			mu.Lock()
			full++
			mu.Unlock()
		}
	})
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(10, time.Minute)}}
	l := newLimiter(t, nil, &ratelimit.Options{LocalActors: 1, Observer: obs}, p) // one per shard
	for i := range 500 {
		allow(t, l, "p", "user:"+strconv.Itoa(i), 1)
	}
	st := l.Stats()
	require.Positive(t, st.LocalFull)
	require.Equal(t, st.LocalFull, st.LocalDenied)
	require.Equal(t, int(st.LocalFull), full)
	require.Equal(t, uint64(500), st.LocalAllowed+st.LocalDenied)
}
