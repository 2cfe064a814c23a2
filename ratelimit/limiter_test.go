package ratelimit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/ratelimit"
)

func TestLimiter_AllowN_algorithms(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	tests := []struct {
		name   string
		policy ratelimit.Policy
		// maxRetry bounds the denial's RetryAfter: one window, but for the
		// counter, which waits for the current fixed window to end and
		// then for the previous one's weight to fall, up to two (72 min
		// here, early in an hour).
		maxRetry time.Duration
	}{
		{"sliding log", ratelimit.Policy{Name: "log", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}}, time.Hour},
		{"sliding window", ratelimit.Policy{Name: "win", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}}, 2 * time.Hour},
		{"gcra", ratelimit.Policy{Name: "gcra", Algorithm: ratelimit.GCRA, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)}}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t, rdb, &ratelimit.Options{Namespace: "t-" + tt.policy.Name}, tt.policy)
			ctx := t.Context()
			for i := range 5 {
				d, err := l.Allow(ctx, tt.policy.Name, "admin:1")
				require.NoError(t, err)
				require.True(t, d.Allowed, "call %d", i)
				require.Equal(t, ratelimit.SourceRedis, d.Source)
				require.Equal(t, 4-i, d.Remaining, "call %d", i)
				require.Equal(t, 5, d.Limit)
				require.False(t, d.Time.IsZero())
			}
			d, err := l.Allow(ctx, tt.policy.Name, "admin:1")
			require.NoError(t, err)
			require.False(t, d.Allowed)
			require.Equal(t, ratelimit.SourceRedis, d.Source)
			require.Equal(t, tt.policy.Name, d.DeniedBy)
			require.Positive(t, d.RetryAfter)
			require.LessOrEqual(t, d.RetryAfter, tt.maxRetry)
			// The next one comes from the denial cache.
			d2, err := l.Allow(ctx, tt.policy.Name, "admin:1")
			require.NoError(t, err)
			require.False(t, d2.Allowed)
			require.Equal(t, ratelimit.SourceDenialCache, d2.Source)
			require.LessOrEqual(t, d2.RetryAfter, d.RetryAfter)
			// Another actor is not affected.
			d3, err := l.Allow(ctx, tt.policy.Name, "admin:2")
			require.NoError(t, err)
			require.True(t, d3.Allowed)
			st := l.Stats()
			require.Equal(t, uint64(6), st.RedisAllowed)
			require.Equal(t, uint64(1), st.RedisDenied)
			require.Equal(t, uint64(1), st.CacheDenied)
		})
	}
}
