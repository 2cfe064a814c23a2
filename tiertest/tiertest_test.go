package tiertest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/tier"
	"github.com/tiercache/tiercache/tiertest"
)

// TestRedis_Faults: the server answers, loses its data when killed and
// restarted on the same address, and stops answering while paused.
func TestRedis_Faults(t *testing.T) {
	t.Parallel()
	srv := tiertest.Redis(t)
	o := srv.Options()
	o.MaxRetries = -1
	o.ReadTimeout = 200 * time.Millisecond
	rdb := redis.NewClient(o)
	defer func() { require.NoError(t, rdb.Close()) }()
	ctx := t.Context()
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	require.Equal(t, "v", rdb.Get(ctx, "k").Val())

	addr := srv.Addr()
	srv.Kill()
	require.Error(t, rdb.Ping(ctx).Err())
	srv.Restart()
	require.Equal(t, addr, srv.Addr(), "same address after a restart")
	require.ErrorIs(t, rdb.Get(ctx, "k").Err(), redis.Nil, "a restarted server is empty")

	srv.Pause()
	err := rdb.Ping(ctx).Err()
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "a paused server times out: %v", err)
	srv.Resume()
	require.NoError(t, srv.Client(t).Ping(ctx).Err())

	srv.Stop()
	require.Error(t, srv.Client(t).Ping(ctx).Err())
}

// TestRedis_Args: extra arguments reach the server (and Options carries the
// password).
func TestRedis_Args(t *testing.T) {
	t.Parallel()
	srv := tiertest.Redis(t, "--requirepass", "s3cret")
	require.NoError(t, srv.Client(t).Ping(t.Context()).Err())
	o := srv.Options()
	o.Password = ""
	anon := redis.NewClient(o)
	defer func() { require.NoError(t, anon.Close()) }()
	require.ErrorContains(t, anon.Ping(t.Context()).Err(), "NOAUTH")
}

// TestRedis_SkipsWithoutRedisServer: with no redis-server on PATH, Redis
// skips the test (neither fails nor returns) with a message saying how to
// install it.
func TestRedis_SkipsWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // not parallel: it changes the process's PATH
	tb := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tiertest.Redis(tb)
		tb.returned = true
	}()
	<-done
	require.False(t, tb.returned, "Redis returned without a server")
	require.Empty(t, tb.fatal)
	require.Contains(t, tb.skipped, "redis-server not found on PATH")
	require.Contains(t, tb.skipped, "apt-get install -y redis-server")
}

// recordingTB records a skip or a fatal failure instead of acting on the
// test, and ends the goroutine as t.Skip and t.Fatal do.
type recordingTB struct {
	testing.TB
	skipped, fatal string
	returned       bool
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// proxied starts a server, a proxy in front of it, and a client of the
// proxy (no retries, 300 ms read timeout), closed when the test ends.
func proxied(t *testing.T) (*tiertest.Server, *tiertest.Proxy, *redis.Client) {
	t.Helper()
	srv := tiertest.Redis(t)
	proxy := tiertest.NewProxy(t, srv.Addr())
	o := srv.Options()
	o.Addr = proxy.Addr()
	o.MaxRetries = -1
	o.ReadTimeout = 300 * time.Millisecond
	rdb := redis.NewClient(o)
	t.Cleanup(func() { require.NoError(t, rdb.Close()) })
	return srv, proxy, rdb
}

// TestProxy_Faults: through the proxy, a client sees the delay, a cut
// (errors at once), a black hole (timeouts), and recovers after Heal.
func TestProxy_Faults(t *testing.T) {
	t.Parallel()
	_, proxy, rdb := proxied(t)
	ctx := t.Context()
	require.NoError(t, rdb.Ping(ctx).Err())
	require.Positive(t, proxy.Conns())

	const d = 20 * time.Millisecond
	proxy.Delay(d)
	start := time.Now()
	require.NoError(t, rdb.Ping(ctx).Err())
	require.GreaterOrEqual(t, time.Since(start), 2*d, "a round trip takes the delay both ways")
	proxy.Delay(0)

	proxy.Cut()
	err := rdb.Ping(ctx).Err()
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "a cut is not a timeout: %v", err)
	proxy.Heal()
	require.NoError(t, rdb.Ping(ctx).Err())

	proxy.Blackhole()
	err = rdb.Ping(ctx).Err()
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "a black hole times out: %v", err)
	proxy.Heal()
	require.NoError(t, rdb.Ping(ctx).Err())
}

// TestClock moves only when told.
func TestClock(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := tiertest.NewClock(start)
	require.True(t, c.Now().Equal(start))
	c.Advance(time.Hour)
	require.True(t, c.Now().Equal(start.Add(time.Hour)))
	c.Advance(-time.Minute)
	require.True(t, c.Now().Equal(start.Add(59*time.Minute)))
	c.Set(start)
	require.True(t, c.Now().Equal(start))
}

// TestKit_CacheOverRedis is the package documentation's test: a cache on
// a real Redis behind the proxy, with the fake clock. When Redis stops
// answering, the cache serves what it holds (fail-safe) instead of the
// origin's error; stepping the clock past the fail-safe window ends that.
func TestKit_CacheOverRedis(t *testing.T) {
	t.Parallel()
	srv, proxy, rdb := proxied(t)
	clock := tiertest.NewClock(time.Now())
	cache, err := tier.New(&tier.Options[string]{
		Namespace: "kit-" + t.Name(), L2: goredis.Must(rdb, nil), Clock: clock,
		TTL: time.Minute, FailSafe: time.Hour, L2Timeout: 100 * time.Millisecond,
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, cache.Close()) }()
	ctx := t.Context()

	origin := errors.New("origin down")
	up := func(context.Context, string) (string, error) { return "v1", nil }
	down := func(context.Context, string) (string, error) { return "", origin }
	v, err := cache.GetOrLoad(ctx, "k", up)
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	require.Positive(t, srv.Client(t).DBSize(ctx).Val(), "the value went to Redis")

	proxy.Blackhole()
	clock.Advance(2 * time.Minute) // past the TTL: a reload, which fails
	v, err = cache.GetOrLoad(ctx, "k", down)
	require.NoError(t, err, "fail-safe serves the stale value")
	require.Equal(t, "v1", v)

	clock.Advance(2 * time.Hour) // past the fail-safe window
	_, err = cache.GetOrLoad(ctx, "k", down)
	require.ErrorIs(t, err, origin)
	proxy.Heal()
}
