package ratelimit_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/ratelimit"
)

// call is one decision seen by the property tests.
type call struct {
	actor   string
	cost    int
	allowed bool
	at      int64 // Redis's clock when the script decided, µs
}

// TestLimiter_SlidingLog_property runs many goroutines through two Limiter
// instances (as two application instances would) against one Redis, with
// random arrivals, random costs and a few actors, on a policy of two
// windows, and checks every decision against the record of every other,
// on Redis's clock (the Time of each decision):
//
//   - never more than N units admitted in any rolling window of either
//     length (exactness);
//   - every denied call really did not fit: some window, measured back from
//     the denial, held admitted units + its cost > N (it admits every call
//     that fits; so denied calls consumed nothing, in neither window, and
//     did not lock the actor out).
func TestLimiter_SlidingLog_property(t *testing.T) {
	t.Parallel()
	windows := []ratelimit.Limit{ratelimit.Per(6, 250*time.Millisecond), ratelimit.Per(15, time.Second)}
	calls := runLoad(t, ratelimit.Policy{Name: "exact", Algorithm: ratelimit.SlidingLog, Limits: windows})
	checkSlidingLog(t, calls, windows, true)
}

// TestLimiter_SlidingLog_property_oneWindow is the same test on a policy of
// one window, which runs the sliding log's own script (logScript) rather
// than the general one.
func TestLimiter_SlidingLog_property_oneWindow(t *testing.T) {
	t.Parallel()
	windows := []ratelimit.Limit{ratelimit.Per(6, 250*time.Millisecond)}
	calls := runLoad(t, ratelimit.Policy{Name: "exact1", Algorithm: ratelimit.SlidingLog, Limits: windows})
	checkSlidingLog(t, calls, windows, true)
}

// TestLimiter_SlidingWindow_bound runs the same load on the sliding-window
// counter and checks its stated bound: never more than 2N-1 in a rolling
// window. It logs the largest excess seen, the counter's error on this
// load.
func TestLimiter_SlidingWindow_bound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		windows []ratelimit.Limit
	}{
		{"two windows", []ratelimit.Limit{ratelimit.Per(6, 250*time.Millisecond), ratelimit.Per(15, time.Second)}},
		// One window runs the counter's own script (counterScript).
		{"one window", []ratelimit.Limit{ratelimit.Per(6, 250*time.Millisecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkSlidingWindowBound(t, tt.windows)
		})
	}
}

func checkSlidingWindowBound(t *testing.T, windows []ratelimit.Limit) {
	t.Helper()
	calls := runLoad(t, ratelimit.Policy{Name: "approx", Algorithm: ratelimit.SlidingWindow, Limits: windows})
	loose := make([]ratelimit.Limit, len(windows))
	for i, w := range windows {
		loose[i] = ratelimit.Per(2*w.N-1, w.Per)
	}
	checkSlidingLog(t, calls, loose, false)
	for _, w := range windows {
		worst := 0
		for _, c := range calls {
			if !c.allowed {
				continue
			}
			u := 0
			for _, o := range calls {
				if o.allowed && o.actor == c.actor && o.at <= c.at && o.at > c.at-w.Per.Microseconds() {
					u += o.cost
				}
			}
			worst = max(worst, u)
		}
		t.Logf("window %d per %v: at most %d units in a rolling window (%+.0f%%)", w.N, w.Per, worst, 100*float64(worst-w.N)/float64(w.N))
	}
}

// runLoad runs many goroutines through two Limiter instances (as two
// application instances would) against one Redis, with random arrivals,
// random costs and a few actors, and returns every decision.
func runLoad(t *testing.T, p ratelimit.Policy) []call {
	t.Helper()
	_, rdb := startRedis(t)
	// No denial cache: every decision is Redis's, with a time to check. A
	// long timeout: a call that times out may still have run on Redis, and
	// its admission would then be missing from the record (on a loaded
	// machine under -race a call can take longer than the default 100 ms).
	o := &ratelimit.Options{NoDenialCache: true, Namespace: "prop", Timeout: 10 * time.Second}
	limiters := []*ratelimit.Limiter{newLimiter(t, rdb, o, p), newLimiter(t, rdb, o, p)}

	run := 2 * time.Second
	if testing.Short() {
		run = 700 * time.Millisecond
	}
	const goroutines = 12
	actors := []string{"admin:1", "admin:2", "user:alice@example.com"}
	var (
		mu    sync.Mutex
		calls []call
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(run)
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 42))
			l := limiters[g%2]
			var mine []call
			for time.Now().Before(deadline) {
				actor := actors[r.IntN(len(actors))]
				cost := 1 + r.IntN(3)
				d, err := l.AllowN(t.Context(), p.Name, actor, cost)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Source != ratelimit.SourceRedis {
					t.Errorf("source %v, want redis", d.Source)
					return
				}
				mine = append(mine, call{actor, cost, d.Allowed, d.Time.UnixMicro()})
				// Random inter-arrival times: this sleep stands for the
				// gaps between a client's requests, not for a goroutine.
				// Bursts (no gap) and pauses, several times the quota.
				if r.IntN(4) > 0 {
					time.Sleep(time.Duration(r.ExpFloat64() * float64(60*time.Millisecond)))
				}
			}
			mu.Lock()
			calls = append(calls, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return calls
}

// checkSlidingLog checks the two properties above on calls; with fits
// false it checks only the upper bound.
func checkSlidingLog(t *testing.T, calls []call, windows []ratelimit.Limit, fits bool) {
	t.Helper()
	byActor := map[string][]call{}
	for _, c := range calls {
		byActor[c.actor] = append(byActor[c.actor], c)
	}
	var allowed, denied int
	for actor, cs := range byActor {
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].at < cs[j].at })
		var adm []call // admitted, in time order
		for _, c := range cs {
			if c.allowed {
				adm = append(adm, c)
			}
		}
		// used returns the units admitted in (at-per, at].
		used := func(at int64, per time.Duration) int {
			lo := at - per.Microseconds()
			i := sort.Search(len(adm), func(i int) bool { return adm[i].at > lo })
			u := 0
			for ; i < len(adm) && adm[i].at <= at; i++ {
				u += adm[i].cost
			}
			return u
		}
		for _, c := range cs {
			if c.allowed {
				allowed++
				for _, w := range windows {
					require.LessOrEqual(t, used(c.at, w.Per), w.N,
						"%s: more than %d units in the %v window ending at %d", actor, w.N, w.Per, c.at)
				}
				continue
			}
			denied++
			if !fits {
				continue
			}
			full := false
			for _, w := range windows {
				full = full || used(c.at, w.Per)+c.cost > w.N
			}
			require.True(t, full, "%s: a call of cost %d at %d was denied but fits every window (%s)",
				actor, c.cost, c.at, describe(c.at, windows, used))
		}
	}
	t.Logf("%d calls: %d admitted, %d denied", len(calls), allowed, denied)
	require.Positive(t, allowed)
	require.Positive(t, denied, "the load never reached the limit: the test proves nothing")
}

func describe(at int64, windows []ratelimit.Limit, used func(int64, time.Duration) int) string {
	s := ""
	for _, w := range windows {
		s += fmt.Sprintf("%v: %d/%d ", w.Per, used(at, w.Per), w.N)
	}
	return s
}
