package breaker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/breaker"
)

// clock is a fake time source that moves only when told.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() int64              { return c.ns.Load() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type change struct{ from, to breaker.State }

func newBreaker(t *testing.T, failures int, cooldown time.Duration) (*breaker.Breaker, *clock, func() []change) {
	t.Helper()
	c := &clock{}
	c.ns.Store(1e18)
	var mu sync.Mutex
	var changes []change
	b := breaker.New(breaker.Options{Failures: failures, Cooldown: cooldown, Now: c.now, OnChange: func(from, to breaker.State) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, change{from, to})
	}})
	return b, c, func() []change {
		mu.Lock()
		defer mu.Unlock()
		return append([]change(nil), changes...)
	}
}

func TestBreaker_OpensAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	b, _, changes := newBreaker(t, 3, time.Second)
	b.Failure()
	b.Failure()
	b.Success() // breaks the run
	b.Failure()
	b.Failure()
	require.Equal(t, breaker.Closed, b.State())
	require.True(t, b.Allow())
	b.Failure()
	require.Equal(t, breaker.Open, b.State())
	require.False(t, b.Allow())
	require.EqualValues(t, 1, b.Opens())
	require.Equal(t, []change{{breaker.Closed, breaker.Open}}, changes())
}

func TestBreaker_HalfOpenProbe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		probe func(*breaker.Breaker)
		want  breaker.State
	}{
		{name: "probe succeeds", probe: (*breaker.Breaker).Success, want: breaker.Closed},
		{name: "probe fails", probe: (*breaker.Breaker).Failure, want: breaker.Open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, c, changes := newBreaker(t, 1, time.Second)
			b.Failure()
			c.advance(time.Second - 1)
			require.False(t, b.Allow(), "still cooling down")
			c.advance(1)
			require.True(t, b.Allow(), "the probe")
			require.Equal(t, breaker.HalfOpen, b.State())
			require.False(t, b.Allow(), "one probe at a time")
			tt.probe(b)
			require.Equal(t, tt.want, b.State())
			require.Equal(t, []change{{breaker.Closed, breaker.Open}, {breaker.Open, breaker.HalfOpen}, {breaker.HalfOpen, tt.want}}, changes())
		})
	}
}

// A probe that never reports does not hold the breaker half-open forever:
// after another cool-down, one more probe goes.
func TestBreaker_LostProbe(t *testing.T) {
	t.Parallel()
	b, c, _ := newBreaker(t, 1, time.Second)
	b.Failure()
	c.advance(time.Second)
	require.True(t, b.Allow())
	require.False(t, b.Allow())
	c.advance(time.Second)
	require.True(t, b.Allow(), "a second probe after the first was lost")
	require.False(t, b.Allow())
}

// A call that ends without reaching the service (Unused) frees the probe
// slot at once: the next call is a probe, without another cool-down. In
// the closed state Unused changes nothing.
func TestBreaker_UnusedProbe(t *testing.T) {
	t.Parallel()
	b, c, changes := newBreaker(t, 1, time.Second)
	b.Unused()
	require.Equal(t, breaker.Closed, b.State())
	b.Failure()
	b.Unused()
	require.False(t, b.Allow(), "an open breaker still cools down")
	c.advance(time.Second)
	require.True(t, b.Allow(), "the probe")
	require.False(t, b.Allow())
	b.Unused()
	require.True(t, b.Allow(), "another probe, at once")
	require.False(t, b.Allow(), "one at a time")
	b.Success()
	require.Equal(t, breaker.Closed, b.State())
	require.Equal(t, []change{{breaker.Closed, breaker.Open}, {breaker.Open, breaker.HalfOpen}, {breaker.HalfOpen, breaker.Closed}}, changes())
}

// Under concurrent callers exactly one probe is let through per cool-down.
func TestBreaker_OneProbeUnderConcurrency(t *testing.T) {
	t.Parallel()
	b, c, _ := newBreaker(t, 1, time.Second)
	b.Failure()
	c.advance(time.Second)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if b.Allow() {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 1, allowed.Load())
}

func TestNew_Defaults(t *testing.T) {
	t.Parallel()
	b := breaker.New(breaker.Options{})
	for range breaker.DefaultFailures - 1 {
		b.Failure()
	}
	require.Equal(t, breaker.Closed, b.State())
	b.Failure()
	require.Equal(t, breaker.Open, b.State())
	require.False(t, b.Allow(), "the default cool-down has not passed")
}

func TestState_String(t *testing.T) {
	t.Parallel()
	require.Equal(t, "closed", breaker.Closed.String())
	require.Equal(t, "open", breaker.Open.String())
	require.Equal(t, "half_open", breaker.HalfOpen.String())
	require.Equal(t, "unknown", breaker.State(9).String())
}

func TestCallerLeft(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	expired, cancel2 := context.WithDeadline(live, time.Unix(0, 0))
	defer cancel2()
	require.False(t, breaker.CallerLeft(live, time.Hour, time.Second), "a live caller: the failure is the service's")
	require.True(t, breaker.CallerLeft(cancelled, time.Hour, time.Second), "a cancelled caller, however long it waited")
	require.True(t, breaker.CallerLeft(expired, 499*time.Millisecond, time.Second), "a deadline that ended before half the timeout")
	require.False(t, breaker.CallerLeft(expired, 500*time.Millisecond, time.Second), "a deadline after half the timeout counts")
	require.True(t, breaker.CallerLeft(expired, breaker.Evidence-1, 15*time.Millisecond), "at least Evidence")
	require.False(t, breaker.CallerLeft(expired, time.Millisecond, time.Millisecond), "at most the whole timeout")
}

func TestForget(t *testing.T) {
	b, clk, _ := newBreaker(t, 1, time.Second)
	b.Failure()
	clk.advance(time.Second)
	require.True(t, b.Allow(), "the probe")
	require.False(t, b.Allow(), "one probe at a time")
	breaker.Forget(b)
	require.True(t, b.Allow(), "a forgotten probe lets the next go at once")
	breaker.Forget(struct{}{}) // a breaker without Unused: nothing to do, no panic
}
