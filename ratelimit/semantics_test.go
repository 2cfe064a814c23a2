package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/ratelimit"
)

// evalCalls returns how many scripts Redis has run.
func evalCalls(t *testing.T, rdb redis.UniversalClient) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	total := 0
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		f := strings.TrimPrefix(strings.SplitN(line, ":", 2)[1], "calls=")
		n, err := strconv.Atoi(strings.SplitN(f, ",", 2)[0])
		require.NoError(t, err)
		total += n
	}
	return total
}

func allow(t *testing.T, l *ratelimit.Limiter, policy, actor string, n int) ratelimit.Decision {
	t.Helper()
	d, err := l.AllowN(t.Context(), policy, actor, n)
	require.NoError(t, err)
	return d
}

func TestLimiter_AllowN_multiWindowAllOrNothing(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	for _, alg := range []ratelimit.Algorithm{ratelimit.SlidingLog, ratelimit.SlidingWindow, ratelimit.GCRA} {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			// "3 per hour and 5 per day": the day has room after the hour is
			// full; a denied call must take nothing from it.
			p := ratelimit.Policy{Name: "p", Algorithm: alg, Limits: []ratelimit.Limit{ratelimit.Per(3, time.Hour), ratelimit.Per(5, 24*time.Hour)}}
			l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true, Namespace: "mw-" + alg.String()}, p)
			d := allow(t, l, "p", "a", 3)
			require.True(t, d.Allowed)
			require.Len(t, d.Windows, 2)
			require.Equal(t, []int{0, 2}, []int{d.Windows[0].Remaining, d.Windows[1].Remaining})
			for range 10 {
				d = allow(t, l, "p", "a", 1)
				require.False(t, d.Allowed)
				require.Equal(t, "p-3600s", d.DeniedBy)
				require.Equal(t, 2, d.Windows[1].Remaining, "a denied call consumed the day window")
				require.Zero(t, d.Windows[1].RetryAfter)
			}
		})
	}
}

func TestLimiter_AllowN_includeAllOrNothing(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	all := ratelimit.Policy{Name: "admin_all", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(4, time.Hour)}}
	force := ratelimit.Policy{Name: "force", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(2, time.Hour)}, Include: []string{"admin_all"}}
	expert := ratelimit.Policy{Name: "expert", Algorithm: ratelimit.GCRA, Limits: []ratelimit.Limit{ratelimit.Per(10, time.Hour)}, Include: []string{"admin_all"}}
	l := newLimiter(t, rdb, &ratelimit.Options{Namespace: "inc"}, all, force, expert)

	require.True(t, allow(t, l, "force", "admin:7", 2).Allowed)
	d := allow(t, l, "force", "admin:7", 1)
	require.False(t, d.Allowed)
	require.Equal(t, "force", d.DeniedBy)
	require.Len(t, d.Windows, 2)
	require.Equal(t, 2, d.Windows[1].Remaining, "the denied call took from admin_all")
	// admin_all still has 2, used by another admin endpoint.
	d = allow(t, l, "expert", "admin:7", 2)
	require.True(t, d.Allowed)
	require.Equal(t, "admin_all", d.Windows[1].Name)
	require.Zero(t, d.Windows[1].Remaining)
	// admin_all is full: expert is denied by it, and the denial is cached
	// for every policy that includes it.
	d = allow(t, l, "expert", "admin:7", 1)
	require.False(t, d.Allowed)
	require.Equal(t, "admin_all", d.DeniedBy)
	require.Equal(t, 8, d.Windows[0].Remaining, "the denied call took from expert")
	before := evalCalls(t, rdb)
	d = allow(t, l, "expert", "admin:7", 1)
	require.Equal(t, ratelimit.SourceDenialCache, d.Source)
	require.Equal(t, "admin_all", d.DeniedBy)
	require.Equal(t, before, evalCalls(t, rdb))
}

func TestLimiter_AllowN_cost(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	for _, alg := range []ratelimit.Algorithm{ratelimit.SlidingLog, ratelimit.SlidingWindow, ratelimit.GCRA} {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			p := ratelimit.Policy{Name: "p", Algorithm: alg, Limits: []ratelimit.Limit{ratelimit.Per(10, time.Hour)}}
			l := newLimiter(t, rdb, &ratelimit.Options{Namespace: "cost-" + alg.String()}, p)
			d := allow(t, l, "p", "a", 7)
			require.True(t, d.Allowed)
			require.Equal(t, 3, d.Remaining)
			d = allow(t, l, "p", "a", 4)
			require.False(t, d.Allowed)
			require.Equal(t, 3, d.Remaining)
			// A smaller call is not answered by the cached denial of a
			// larger one, and fits.
			d = allow(t, l, "p", "a", 3)
			require.True(t, d.Allowed, "%+v", d)
			require.Equal(t, ratelimit.SourceRedis, d.Source)
			require.Zero(t, d.Remaining)
			_, err := l.AllowN(t.Context(), "p", "a", 11)
			require.ErrorIs(t, err, ratelimit.ErrInvalidCost)
			_, err = l.AllowN(t.Context(), "p", "a", 0)
			require.ErrorIs(t, err, ratelimit.ErrInvalidCost)
		})
	}
}

// TestLimiter_AllowN_deniedDoNotLockOut hammers a full quota for longer
// than its window: the calls made while it is full must not keep it full.
// With ConsumeDenied they do.
func TestLimiter_AllowN_deniedDoNotLockOut(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	// The window is long against a stall of a loaded machine: with
	// ConsumeDenied, the attempts of the last window keep the actor out
	// only if one of them fell in it.
	const per = 2 * time.Second
	tests := []struct {
		name    string
		consume bool
	}{{"default", false}, {"consume denied", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(3, per)}, ConsumeDenied: tt.consume}
			l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true, Namespace: "lock-" + strconv.FormatBool(tt.consume)}, p)
			first := allow(t, l, "p", "a", 3)
			require.True(t, first.Allowed)
			var last ratelimit.Decision
			for {
				d := allow(t, l, "p", "a", 1)
				if d.Time.Sub(first.Time) > per {
					// The first attempt after the window of the first three.
					last = d
					break
				}
				require.False(t, d.Allowed)
				// The gap between two attempts of a client that keeps
				// trying; not a wait for another goroutine.
				time.Sleep(5 * time.Millisecond)
			}
			if tt.consume {
				require.False(t, last.Allowed, "attempts made while full should keep the actor out")
			} else {
				require.True(t, last.Allowed, "denied attempts locked the actor out: %+v", last)
			}
		})
	}
}

// TestLimiter_denialCache checks that a denied actor is answered from
// memory, without a round trip, until the time Redis gave, and by Redis
// after it. The cache runs on a fake clock: the time Redis gave is counted
// from a reading taken before the round trip, so on the real clock a slow
// round trip (a loaded machine) would use up the margin of a test that
// measures up to it.
func TestLimiter_denialCache(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	// Long enough that the first two calls fall in one window on a loaded
	// machine (under -race, two calls 200 ms apart have been seen).
	const per = time.Second
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(2, per)}}
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	l := newLimiter(t, rdb, &ratelimit.Options{Namespace: "l1", Clock: clock}, p)
	require.True(t, allow(t, l, "p", "a", 2).Allowed)
	d := allow(t, l, "p", "a", 1)
	require.False(t, d.Allowed)
	require.Equal(t, ratelimit.SourceRedis, d.Source)
	require.Positive(t, d.RetryAfter)
	before := evalCalls(t, rdb)
	const n = 20
	for i := range n {
		if i == n-1 {
			clock.Add(d.RetryAfter - time.Nanosecond) // the last moment of the denial
		}
		d := allow(t, l, "p", "a", 1)
		require.False(t, d.Allowed)
		require.Equal(t, ratelimit.SourceDenialCache, d.Source)
		require.Positive(t, d.RetryAfter)
		// The summary describes the window that denied; no Windows.
		require.Equal(t, "p", d.DeniedBy)
		require.Equal(t, 2, d.Limit)
		require.Zero(t, d.Remaining)
		require.Equal(t, d.RetryAfter, d.Reset)
		require.Empty(t, d.Windows)
	}
	require.Equal(t, before, evalCalls(t, rdb), "%d cached denials made round trips", n)
	// Past the retry time, Redis decides again.
	clock.Add(time.Nanosecond)
	require.Equal(t, ratelimit.SourceRedis, allow(t, l, "p", "a", 1).Source)
	require.Equal(t, before+1, evalCalls(t, rdb))
	// And admits once its own window has moved on (Redis's clock is real;
	// each round moves the fake one past any denial cached meanwhile).
	require.Eventually(t, func() bool {
		clock.Add(per)
		d := allow(t, l, "p", "a", 1)
		return d.Allowed && d.Source == ratelimit.SourceRedis
	}, 10*time.Second, 5*time.Millisecond)
}

// TestLimiter_actorsHashed checks that no actor reaches Redis or the
// Observer as given, and that one actor's keys share one hash tag.
func TestLimiter_actorsHashed(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	a := ratelimit.Policy{Name: "a", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}}
	b := ratelimit.Policy{Name: "b", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}, Include: []string{"a"}}
	var mu sync.Mutex
	var seen []string
	obs := ratelimit.ObserverFunc(func(_ context.Context, e ratelimit.Event) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.Actor)
	})
	l := newLimiter(t, rdb, &ratelimit.Options{Observer: obs}, a, b)
	const actor = "alice@example.com"
	for range 7 {
		allow(t, l, "b", actor, 1)
	}
	keys, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	tags := map[string]bool{}
	for _, k := range keys {
		require.NotContains(t, k, "alice")
		require.True(t, strings.HasPrefix(k, "rl:{"), k)
		tags[k[:strings.Index(k, "}")+1]] = true
		ttl, err := rdb.PTTL(t.Context(), k).Result()
		require.NoError(t, err)
		require.Positive(t, ttl, "key %s has no TTL", k)
	}
	require.Len(t, tags, 1, "one actor's keys must share one hash tag: %v", keys)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 7)
	for _, s := range seen {
		require.Len(t, s, 16)
		require.NotContains(t, s, "alice")
		require.Contains(t, keys[0], s)
	}
}

func TestLimiter_AllowN_errors(t *testing.T) {
	t.Parallel()
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.GCRA, Limits: []ratelimit.Limit{{N: 10, Per: time.Minute, Burst: 3}}}
	l := newLimiter(t, nil, nil, p)
	_, err := l.Allow(t.Context(), "nope", "a")
	require.ErrorIs(t, err, ratelimit.ErrUnknownPolicy)
	_, err = l.Allow(t.Context(), "p", "")
	require.ErrorIs(t, err, ratelimit.ErrInvalidActor)
	_, err = l.AllowN(t.Context(), "p", "a", 4)
	require.ErrorIs(t, err, ratelimit.ErrInvalidCost, "GCRA admits at most its burst at once")
	require.False(t, errors.Is(err, ratelimit.ErrInvalidPolicy))
}

// TestLimiter_GCRA_isNotNPerWindow shows why security quotas use the
// sliding log: GCRA with the default burst admits the burst at once and
// then one unit every window/N, so the first rolling window holds more
// than N (go-redis/redis_rate's PerHour(5) admits 9 in the first hour).
// The sliding log, under the same calls, admits exactly N.
func TestLimiter_GCRA_isNotNPerWindow(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	// Long against a stall of a loaded machine: GCRA admits its 7 to 9
	// only if the client asks again after each emission.
	const per = 2 * time.Second
	for _, tt := range []struct {
		alg     ratelimit.Algorithm
		atLeast int
		atMost  int
	}{{ratelimit.GCRA, 7, 9}, {ratelimit.SlidingLog, 5, 5}} {
		p := ratelimit.Policy{Name: "p", Algorithm: tt.alg, Limits: []ratelimit.Limit{ratelimit.Per(5, per)}}
		l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true, Namespace: "n-" + tt.alg.String()}, p)
		var first time.Time
		admitted := 0
		for {
			d := allow(t, l, "p", "a", 1)
			if first.IsZero() {
				first = d.Time
			}
			if d.Time.Sub(first) >= per {
				break
			}
			if d.Allowed {
				admitted++
			}
			// A client retrying every 10 ms; not a wait for a goroutine.
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%v: %d admitted in the first rolling %v for a quota of 5", tt.alg, admitted, per)
		require.GreaterOrEqual(t, admitted, tt.atLeast, tt.alg.String())
		require.LessOrEqual(t, admitted, tt.atMost, tt.alg.String())
	}
}

// TestLimiter_SlidingLog_largeCost: a call of thousands of units is
// decided like any other, on both scripts (one window, and two). Before,
// the script passed all of a call's members to one ZADD through unpack,
// which overflows Lua's stack past about 4,000 units: every such call
// failed, and counted against the breaker every policy shares, so one
// actor could open it and push every policy into its outage mode.
func TestLimiter_SlidingLog_largeCost(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	one := ratelimit.Policy{Name: "one", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(10_000, time.Hour)}}
	two := ratelimit.Policy{Name: "two", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(10_000, time.Hour), ratelimit.Per(20_000, 2*time.Hour)}}
	l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true}, one, two)
	for _, p := range []string{"one", "two"} {
		require.True(t, allow(t, l, p, "a", 5_000).Allowed, p)
		require.True(t, allow(t, l, p, "a", 5_000).Allowed, p)
		d := allow(t, l, p, "a", 1)
		require.False(t, d.Allowed, p)
		require.Zero(t, d.Remaining, p)
	}
	st := l.Stats()
	require.Zero(t, st.RedisErrors)
	require.Zero(t, st.BreakerOpens)
}

// TestLimiter_SlidingLog_consumeDeniedBounded: with ConsumeDenied, every
// denied call adds its units to the log, but the log keeps only the newest
// N (they decide every call): a flood of denied calls leaves the log at
// N entries, and the actor is still kept out. Before, it grew by every
// call's units.
func TestLimiter_SlidingLog_consumeDeniedBounded(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	one := ratelimit.Policy{Name: "one", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}, ConsumeDenied: true}
	two := ratelimit.Policy{Name: "two", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(3, time.Minute), ratelimit.Per(5, time.Hour)}, ConsumeDenied: true}
	l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true, Namespace: "bounded"}, one, two)
	for _, p := range []string{"one", "two"} {
		for i := range 200 {
			d := allow(t, l, p, "a", 1+i%3)
			require.Equal(t, i < 2, d.Allowed, "%s call %d", p, i)
		}
	}
	keys, err := rdb.Keys(t.Context(), "bounded*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	for _, k := range keys {
		n, err := rdb.ZCard(t.Context(), k).Result()
		require.NoError(t, err)
		require.EqualValues(t, 5, n, k)
	}
}

// TestLimiter_longActors: an actor over 256 bytes (kept in process as its
// keyed hash, so that forged headers cannot fill memory) is limited as any
// other, and two that share their first 256 bytes are two actors.
func TestLimiter_longActors(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	p := ratelimit.Policy{Name: "p", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(2, time.Hour)}}
	l := newLimiter(t, rdb, nil, p)
	long := strings.Repeat("x", 1<<20)
	for _, actor := range []string{long + "a", long + "b"} {
		require.True(t, allow(t, l, "p", actor, 2).Allowed)
		d := allow(t, l, "p", actor, 1)
		require.False(t, d.Allowed)
		require.Equal(t, ratelimit.SourceDenialCache, allow(t, l, "p", actor, 1).Source, "its denial is cached")
		require.NoError(t, l.Reset(t.Context(), "p", actor))
		require.True(t, allow(t, l, "p", actor, 1).Allowed, "Reset names the same actor")
	}
}

// TestLimiter_SlidingWindow_clockBack: a counter whose stored window is
// later than Redis's clock (a failover to a node whose clock is behind, an
// NTP step back across a window's end) still counts what it holds. Before,
// the later window read as empty and a full quota was admitted again.
func TestLimiter_SlidingWindow_clockBack(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	one := ratelimit.Policy{Name: "one", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}}
	two := ratelimit.Policy{Name: "two", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour), ratelimit.Per(50, 24*time.Hour)}}
	l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true, Namespace: "back"}, one, two)
	ctx := t.Context()
	for _, p := range []string{"one", "two"} {
		require.True(t, allow(t, l, p, "a", 5).Allowed, p)
		keys, err := rdb.Keys(ctx, "back:*:"+p).Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		v, err := rdb.Get(ctx, keys[0]).Result()
		require.NoError(t, err)
		f := strings.Fields(v)
		for i := 0; i < len(f); i += 3 { // each window's index, one ahead
			b, err := strconv.ParseInt(f[i], 10, 64)
			require.NoError(t, err)
			f[i] = strconv.FormatInt(b+1, 10)
		}
		require.NoError(t, rdb.Set(ctx, keys[0], strings.Join(f, " "), time.Hour).Err())
		require.False(t, allow(t, l, p, "a", 1).Allowed, "%s: the quota is used", p)
	}
}

// TestLimiter_SlidingWindow_clockBackPrevious: the stored state is a
// window ahead of Redis's clock with a count in the window it stored
// before that (3 units late in one window, 1 early in the next; then the
// clock steps back into the first). Both are in or after the current
// window: 4 of 5 are used and one more call fits. Weighting the 3 as the
// previous window's (they were, for the window the state names) admitted
// about three more.
func TestLimiter_SlidingWindow_clockBackPrevious(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	one := ratelimit.Policy{Name: "one", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}}
	two := ratelimit.Policy{Name: "two", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour), ratelimit.Per(500, 24*time.Hour)}}
	l := newLimiter(t, rdb, &ratelimit.Options{NoDenialCache: true, Namespace: "backprev"}, one, two)
	ctx := t.Context()
	for _, p := range []string{"one", "two"} {
		require.True(t, allow(t, l, p, "a", 1).Allowed, p)
		keys, err := rdb.Keys(ctx, "backprev:*:"+p).Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		tm, err := rdb.Time(ctx).Result()
		require.NoError(t, err)
		v := fmt.Sprintf("%d 1 3", tm.UnixMicro()/time.Hour.Microseconds()+1)
		if p == "two" {
			v += fmt.Sprintf(" %d 4 0", tm.UnixMicro()/(24*time.Hour).Microseconds())
		}
		require.NoError(t, rdb.Set(ctx, keys[0], v, time.Hour).Err())
		admitted := 0
		for range 10 {
			if allow(t, l, p, "a", 1).Allowed {
				admitted++
			}
		}
		require.Equal(t, 1, admitted, "%s: 4 of 5 are used", p)
	}
}
