package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// fastClient returns a client that does not retry and gives up reading after
// readTimeout, so that a fault shows up as one quick error.
func fastClient(t *testing.T, s *Server, readTimeout time.Duration) *redis.Client {
	t.Helper()
	opts := s.Options()
	opts.MaxRetries = -1
	opts.DialTimeout = time.Second
	opts.DialerRetries = 1
	opts.ReadTimeout = readTimeout
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireTimeout fails unless err is a network timeout.
func requireTimeout(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "want a timeout, got %v", err)
}

func TestStart(t *testing.T) {
	t.Parallel()
	s := Start(t)

	host, port, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.Equal(t, strconv.Itoa(s.Port()), port)

	rdb := s.Client(t)
	require.Equal(t, "PONG", rdb.Ping(t.Context()).Val())
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
	require.Equal(t, "v", rdb.Get(t.Context(), "k").Val())

	cfg, err := rdb.ConfigGet(t.Context(), "*").Result()
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", cfg["bind"])
	require.Empty(t, cfg["save"])
	require.Equal(t, "no", cfg["appendonly"])
}

func TestStart_Password(t *testing.T) {
	t.Parallel()
	s := Start(t, "--requirepass", "secret")

	require.NoError(t, s.Client(t).Ping(t.Context()).Err())

	anon := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = anon.Close() })
	require.ErrorContains(t, anon.Ping(t.Context()).Err(), "NOAUTH")
}

// fatalTB records the first Fatalf and ends the goroutine like testing.T.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// startFatal runs Start with args and returns the message it failed with, or
// "" if it did not fail.
func startFatal(t *testing.T, args ...string) string {
	t.Helper()
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(tb, args...)
	}()
	<-done
	return tb.msg
}

func TestStart_MissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	require.Contains(t, startFatal(t), "apt-get install -y redis-server")
}

func TestStart_ReservedArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bind", args: []string{"--bind", "0.0.0.0"}, want: `"--bind"`},
		{name: "port", args: []string{"--port", "6379"}, want: `"--port"`},
		{name: "persistence", args: []string{"--appendonly", "yes"}, want: `"--appendonly"`},
		{name: "case", args: []string{"--SAVE", "60 1"}, want: `"--SAVE"`},
		{name: "quiet log", args: []string{"--loglevel", "warning"}, want: "--loglevel warning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, startFatal(t, tt.args...), tt.want)
		})
	}
}

func TestServer_Kill(t *testing.T) {
	t.Parallel()
	s := Start(t)
	rdb := fastClient(t, s, time.Second)
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
	port := s.Port()

	s.Kill()
	require.Error(t, rdb.Ping(t.Context()).Err())
	s.Kill() // no-op when not running

	s.Restart()
	require.Equal(t, port, s.Port())
	require.NoError(t, rdb.Ping(t.Context()).Err())
	require.ErrorIs(t, rdb.Get(t.Context(), "k").Err(), redis.Nil, "data must not survive a restart")
}

func TestServer_Stop(t *testing.T) {
	t.Parallel()
	s := Start(t)
	rdb := fastClient(t, s, time.Second)
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())

	s.Stop()
	s.Stop() // idempotent
	require.Error(t, rdb.Ping(t.Context()).Err())

	s.Restart()
	require.NoError(t, rdb.Ping(t.Context()).Err())
	require.ErrorIs(t, rdb.Get(t.Context(), "k").Err(), redis.Nil, "data must not survive a restart")
}

func TestServer_Restart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	rdb := fastClient(t, s, time.Second)
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())

	s.Restart() // while running: stops it first
	require.ErrorIs(t, rdb.Get(t.Context(), "k").Err(), redis.Nil)

	// Several kill/restart cycles in a row hit the port while the previous
	// connections are still in TIME_WAIT.
	for range 3 {
		require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
		s.Kill()
		s.Restart()
	}
	require.NoError(t, rdb.Ping(t.Context()).Err())
}

func TestServer_Pause(t *testing.T) {
	t.Parallel()
	s := Start(t)
	rdb := fastClient(t, s, 200*time.Millisecond)
	require.NoError(t, rdb.Ping(t.Context()).Err())

	s.Pause()
	s.Pause() // no-op when already paused
	requireTimeout(t, rdb.Ping(t.Context()).Err())

	s.Resume()
	s.Resume() // no-op when not paused
	require.NoError(t, rdb.Ping(t.Context()).Err())
}

func TestServer_Cleanup(t *testing.T) {
	t.Parallel()
	var p *process
	t.Run("paused", func(t *testing.T) {
		s := Start(t)
		p = s.proc
		s.Pause()
	})
	// The subtest's cleanup has resumed, killed and reaped the process.
	require.True(t, p.exited())
	require.ErrorIs(t, p.cmd.Process.Signal(os.Kill), os.ErrProcessDone)
}

func TestServer_Restart_portTaken(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Kill()

	// Hold the port until redis-server has failed to bind it once.
	ln, err := net.Listen("tcp", s.Addr())
	require.NoError(t, err)
	// The log is the only signal of the failed attempt, so poll it.
	released, stop := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-released })
	go func() {
		defer close(released)
		defer ln.Close()
		ticker := time.NewTicker(time.Millisecond)
		defer ticker.Stop()
		for !strings.Contains(s.readLog(0), addrInUseLine) {
			select {
			case <-ticker.C:
			case <-stop:
				return
			}
		}
	}()

	s.Restart()
	<-released
	require.NoError(t, s.Client(t).Ping(t.Context()).Err())
}
