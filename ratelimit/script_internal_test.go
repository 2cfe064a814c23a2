package ratelimit

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestScripts_oneWindowMatchDecideScript runs the same random calls
// through a one-window policy's own script (gcraScript, logScript) and
// through the general decideScript, on two keys, call by call, and checks
// that both admit the same calls and report the same remaining room; reset
// and retry may differ only by how far apart the two scripts ran (both
// replies carry Redis's time). The window is an hour, so no unit leaves it
// during the test: the scripts are compared on the same history.
func TestScripts_oneWindowMatchDecideScript(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	tests := []struct {
		name    string
		policy  Policy
		special *script
	}{
		{"gcra", Policy{Name: "g", Algorithm: GCRA, Limits: []Limit{{N: 10, Per: time.Hour, Burst: 4}}}, gcraScript},
		{"gcra consume denied", Policy{Name: "gc", Algorithm: GCRA, Limits: []Limit{Per(6, time.Hour)}, ConsumeDenied: true}, gcraScript},
		{"sliding log", Policy{Name: "l", Algorithm: SlidingLog, Limits: []Limit{Per(7, time.Hour)}}, logScript},
		{"sliding log consume denied", Policy{Name: "lc", Algorithm: SlidingLog, Limits: []Limit{Per(7, time.Hour)}, ConsumeDenied: true}, logScript},
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

			ctx := t.Context()
			ahG, ahS := l.hash.sum("general"), l.hash.sum("special")
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
					if tt.policy.Algorithm == SlidingLog {
						require.LessOrEqual(t, ttl, time.Hour+time.Millisecond)
					}
				}
			}
			require.Positive(t, admitted)
			require.Positive(t, denied)
		})
	}
}
