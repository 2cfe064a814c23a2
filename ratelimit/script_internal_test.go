package ratelimit

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestScripts_oneWindowMatchDecideScript runs the same random calls
// through a one-window policy's own script (gcraScript, logScript,
// counterScript) and
// through the general decideScript, on two keys, call by call, and checks
// that both admit the same calls and report the same remaining room; reset
// and retry may differ only by how far apart the two scripts ran (both
// replies carry Redis's time). The windows are long, so no unit leaves
// them during the test: the scripts are compared on the same history.
func TestScripts_oneWindowMatchDecideScript(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	tests := []struct {
		name    string
		policy  Policy
		special *script
		prev    int // the counter: units counted in the previous fixed window
	}{
		{"gcra", Policy{Name: "g", Algorithm: GCRA, Limits: []Limit{{N: 10, Per: time.Hour, Burst: 4}}}, gcraScript, 0},
		{"gcra consume denied", Policy{Name: "gc", Algorithm: GCRA, Limits: []Limit{Per(6, time.Hour)}, ConsumeDenied: true}, gcraScript, 0},
		{"sliding log", Policy{Name: "l", Algorithm: SlidingLog, Limits: []Limit{Per(7, time.Hour)}}, logScript, 0},
		{"sliding log consume denied", Policy{Name: "lc", Algorithm: SlidingLog, Limits: []Limit{Per(7, time.Hour)}, ConsumeDenied: true}, logScript, 0},
		// The counter's fixed windows start at multiples of the window
		// since the epoch: the longest window makes a test that straddles
		// one unlikely (one in millions).
		{"sliding window", Policy{Name: "w", Algorithm: SlidingWindow, Limits: []Limit{Per(9, maxWindow)}}, counterScript, 0},
		{"sliding window consume denied", Policy{Name: "wc", Algorithm: SlidingWindow, Limits: []Limit{Per(9, maxWindow)}, ConsumeDenied: true}, counterScript, 0},
		{"sliding window after a busy window", Policy{Name: "wp", Algorithm: SlidingWindow, Limits: []Limit{Per(9, maxWindow)}}, counterScript, 7},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := New(&Options{Client: rdb, Policies: []Policy{tt.policy}, ActorSecret: []byte("test-secret-0123456789"), Namespace: "diff"})
			require.NoError(t, err)
			special := l.policies[tt.policy.Name]
			require.Same(t, tt.special, special.script)
			require.True(t, special.single)
			general := *special
			general.script, general.argv, general.single = decideScript, special.args, false
			general.evalsha = [3]any{"evalsha", decideScript.hash, "1"}

			ctx := t.Context()
			ahG, ahS := l.hash.sum("general"), l.hash.sum("special")
			if tt.prev > 0 {
				// Both keys start with prev units in the fixed window
				// before the current one.
				now, err := rdb.Time(ctx).Result()
				require.NoError(t, err)
				bucket := now.UnixMicro() / maxWindow.Microseconds()
				for _, ah := range []actorSum{ahG, ahS} {
					v := strconv.FormatInt(bucket-1, 10) + " " + strconv.Itoa(tt.prev) + " 0"
					require.NoError(t, rdb.Set(ctx, key(l.o.Namespace, ah, tt.policy.Name), v, 2*maxWindow).Err())
				}
			}
			r := rand.New(rand.NewPCG(uint64(i), 7))
			var skew int64 // the largest gap between the two scripts of one step, µs
			var admitted, denied int
			for step := range 40 {
				n := 1 + r.IntN(3)
				g, err := l.eval(ctx, &general, ahG, n)
				require.NoError(t, err)
				s, err := l.eval(ctx, special, ahS, n)
				require.NoError(t, err)
				skew = max(skew, s[0]-g[0])
				dg, ds := l.redisDecision(&general, n, g), l.redisDecision(special, n, s)
				require.Equal(t, dg.Allowed, ds.Allowed, "step %d, cost %d", step, n)
				require.Equal(t, dg.Windows[0].Remaining, ds.Windows[0].Remaining, "step %d, cost %d", step, n)
				tol := time.Duration(2*skew+1) * time.Microsecond
				require.InDelta(t, dg.Windows[0].Reset, ds.Windows[0].Reset, float64(tol), "step %d", step)
				require.InDelta(t, dg.Windows[0].RetryAfter, ds.Windows[0].RetryAfter, float64(tol), "step %d", step)
				if ds.Allowed {
					admitted++
				} else {
					denied++
				}
				for _, ah := range []actorSum{ahG, ahS} {
					ttl, err := rdb.PTTL(ctx, key(l.o.Namespace, ah, tt.policy.Name)).Result()
					require.NoError(t, err)
					require.Positive(t, ttl, "the key has no TTL")
					switch tt.policy.Algorithm {
					case SlidingLog:
						require.LessOrEqual(t, ttl, time.Hour+time.Millisecond)
					case SlidingWindow:
						require.LessOrEqual(t, ttl, 2*maxWindow+time.Millisecond)
					}
				}
			}
			require.Positive(t, admitted)
			require.Positive(t, denied)
		})
	}
}
