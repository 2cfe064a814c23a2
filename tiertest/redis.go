package tiertest

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// Server is a redis-server process owned by one test, started by [Redis]
// on 127.0.0.1 and a free port, with persistence off and a temporary
// working directory, and stopped when the test ends. Its log is printed
// only if the test fails.
//
// A Server is safe for concurrent use. Its methods fail the test (with
// t.Fatalf) when they cannot do what they say, so call them from the
// test's goroutine.
type Server struct{ s *redistest.Server }

// Redis starts a redis-server for t and waits until it answers PING.
// args are extra redis-server arguments, for example "--requirepass",
// "secret" or "--maxmemory", "10mb"; they must not set bind, port, dir,
// daemonize, logfile, save or appendonly.
//
// If redis-server is not on PATH, Redis skips the test (t.Skip) with a
// message saying how to install it. A skip is a skip, not a pass: it means
// nothing was tested.
func Redis(t testing.TB, args ...string) *Server {
	t.Helper()
	if err := redistest.Installed(); err != nil {
		t.Skipf("tiertest: skipped, no Redis to test against: %v", err)
	}
	return &Server{s: redistest.Start(t, args...)}
}

// Addr returns the server's address, "127.0.0.1:PORT". It stays the same
// across [Server.Restart].
func (s *Server) Addr() string { return s.s.Addr() }

// Options returns new go-redis options for the server (its address and,
// if it was started with --requirepass, its password, and
// ContextTimeoutEnabled, which tiercache's goredis backend requires). Change
// them as needed before redis.NewClient.
func (s *Server) Options() *redis.Options { return s.s.Options() }

// Client returns a new go-redis client for the server, closed when the
// test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	return s.s.Client(t)
}

// Kill sends SIGKILL to the server and waits until it exited: its data is
// lost and clients see their connections reset.
func (s *Server) Kill() { s.s.Kill() }

// Stop shuts the server down gracefully (SIGTERM) and waits until it
// exited.
func (s *Server) Stop() { s.s.Stop() }

// Restart starts the server again, empty, on the same port, and waits
// until it answers PING.
func (s *Server) Restart() { s.s.Restart() }

// Pause freezes the server (SIGSTOP): its connections stay open but
// nothing is answered, like a server stuck in a long command or a
// stop-the-world pause. Clients see timeouts.
func (s *Server) Pause() { s.s.Pause() }

// Resume unfreezes a server frozen by [Server.Pause].
func (s *Server) Resume() { s.s.Resume() }
