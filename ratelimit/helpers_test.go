package ratelimit_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/ratelimit"
)

var secret = []byte("test-secret-0123456789")

// newLimiter returns a Limiter over rdb with policies and the test's
// options (o may be nil).
func newLimiter(t *testing.T, rdb redis.UniversalClient, o *ratelimit.Options, policies ...ratelimit.Policy) *ratelimit.Limiter {
	t.Helper()
	var opts ratelimit.Options
	if o != nil {
		opts = *o
	}
	opts.Client = rdb
	opts.Policies = policies
	if opts.Timeout == 0 {
		// Tests of what Redis decides must not see a fallback because a
		// loaded machine (-race, two cores shared) took over 100 ms.
		opts.Timeout = 5 * time.Second
	}
	if opts.ActorSecret == nil {
		opts.ActorSecret = secret
	}
	l, err := ratelimit.New(&opts)
	require.NoError(t, err)
	return l
}

// startRedis starts a private redis-server and returns a client for it.
func startRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	return srv, srv.Client(t)
}
