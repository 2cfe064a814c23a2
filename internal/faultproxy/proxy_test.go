package faultproxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// newClient returns a go-redis client for addr that does not retry, so that a
// fault shows up as one error, and gives up reading after readTimeout.
func newClient(t *testing.T, addr string, readTimeout time.Duration) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:          addr,
		MaxRetries:    -1,
		DialerRetries: 1,
		DialTimeout:   time.Second,
		ReadTimeout:   readTimeout,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// start returns a real redis-server with a proxy in front of it.
func start(t *testing.T) (*redistest.Server, *faultproxy.Proxy) {
	t.Helper()
	srv := redistest.Start(t)
	return srv, faultproxy.New(t, srv.Addr())
}

// dial opens a raw connection through p and checks that it forwards a PING.
func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	r := bufio.NewReader(c)
	require.Equal(t, "+PONG\r\n", roundTrip(t, c, r, "PING"))
	return c, r
}

// roundTrip sends an inline command and returns the reply line.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, cmd string) string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := io.WriteString(c, cmd+"\r\n")
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	return line
}

// requireTimeout fails unless err is a network timeout and not a reset.
func requireTimeout(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "want a timeout, got %v", err)
	require.NotErrorIs(t, err, syscall.ECONNRESET)
	require.NotErrorIs(t, err, io.EOF)
}

func TestNew(t *testing.T) {
	t.Parallel()
	srv, p := start(t)
	require.NotEqual(t, srv.Addr(), p.Addr())
	host, _, err := net.SplitHostPort(p.Addr())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)

	rdb := newClient(t, p.Addr(), time.Second)
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
	require.Equal(t, "v", rdb.Get(t.Context(), "k").Val())
	// The write went through to the real server.
	require.Equal(t, "v", srv.Client(t).Get(t.Context(), "k").Val())
}

func TestProxy_SetLatency(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	rdb := newClient(t, p.Addr(), time.Second)
	require.NoError(t, rdb.Ping(t.Context()).Err()) // connect before measuring

	const latency = 50 * time.Millisecond
	p.SetLatency(latency)
	begin := time.Now()
	require.NoError(t, rdb.Ping(t.Context()).Err())
	// The request and the reply are each delayed once.
	require.GreaterOrEqual(t, time.Since(begin), 2*latency)

	p.SetLatency(0)
	require.NoError(t, rdb.Ping(t.Context()).Err())
}

func TestProxy_SetJitter(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	c, r := dial(t, p)

	// Chunks get delays between 1 and 21 ms, so a later chunk is often due
	// before an earlier one; the bytes must still arrive in order.
	p.SetLatency(time.Millisecond)
	p.SetJitter(20 * time.Millisecond)
	const n = 50
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	for range n {
		_, err := io.WriteString(c, "INCR counter\r\n")
		require.NoError(t, err)
	}
	for i := 1; i <= n; i++ {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf(":%d\r\n", i), line)
	}
}

func TestProxy_Cut(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	rdb := newClient(t, p.Addr(), time.Second)
	require.NoError(t, rdb.Ping(t.Context()).Err())
	raw, r := dial(t, p)
	require.Equal(t, 2, p.Conns())

	p.Cut()
	require.Zero(t, p.Conns())
	require.Error(t, rdb.Ping(t.Context()).Err())
	_, err := r.ReadString('\n')
	require.Error(t, err, "a cut connection must be closed")
	_ = raw.Close()

	// New connections are refused until Heal.
	require.Error(t, newClient(t, p.Addr(), time.Second).Ping(t.Context()).Err())
	require.Zero(t, p.Conns())

	p.Heal()
	require.NoError(t, newClient(t, p.Addr(), time.Second).Ping(t.Context()).Err())
	require.NoError(t, rdb.Ping(t.Context()).Err(), "the old client reconnects")
}

func TestProxy_Blackhole(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	rdb := newClient(t, p.Addr(), 300*time.Millisecond)
	require.NoError(t, rdb.Ping(t.Context()).Err())

	p.Blackhole()
	requireTimeout(t, rdb.Ping(t.Context()).Err())
	// New connections are accepted and blackholed too.
	requireTimeout(t, newClient(t, p.Addr(), 300*time.Millisecond).Ping(t.Context()).Err())

	p.Heal()
	require.NoError(t, rdb.Ping(t.Context()).Err())
}

func TestProxy_Heal(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	c, r := dial(t, p)

	p.Blackhole()
	require.NoError(t, c.SetDeadline(time.Now().Add(100*time.Millisecond)))
	_, err := io.WriteString(c, "PING\r\n")
	require.NoError(t, err)
	_, err = r.ReadString('\n')
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "want a timeout, got %v", err)
	require.Equal(t, 1, p.Conns(), "a blackholed connection stays open")

	// Heal closes the blackholed connection, whose stream lost bytes.
	p.Heal()
	require.Zero(t, p.Conns())
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF)

	dial(t, p) // a new connection forwards again
}

func TestProxy_Conns(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	require.Zero(t, p.Conns())
	c1, _ := dial(t, p)
	dial(t, p)
	require.Equal(t, 2, p.Conns())

	require.NoError(t, c1.Close())
	// The proxy notices the close asynchronously.
	require.Eventually(t, func() bool { return p.Conns() == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestProxy_Close(t *testing.T) {
	t.Parallel()
	_, p := start(t)
	c, _ := dial(t, p)
	// Leave a chunk waiting in the proxy: Close must not wait for it.
	p.SetLatency(time.Hour)
	_, err := io.WriteString(c, "PING\r\n")
	require.NoError(t, err)

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	require.Zero(t, p.Conns())

	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "a closed proxy does not listen")
}

func TestNew_UnreachableTarget(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := faultproxy.New(t, srv.Addr())
	srv.Kill()

	rdb := newClient(t, p.Addr(), time.Second)
	require.Error(t, rdb.Ping(t.Context()).Err())

	srv.Restart()
	require.NoError(t, rdb.Ping(t.Context()).Err())
}
