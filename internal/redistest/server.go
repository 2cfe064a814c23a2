package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// binary is the program Start looks up on PATH.
	binary = "redis-server"
	// installHint tells a developer how to get the binary.
	installHint = "apt-get install -y redis-server"
	// host is the only address a server ever binds to.
	host = "127.0.0.1"

	// portAttempts bounds how many free ports Start tries when another
	// process takes the chosen port before redis-server binds it.
	portAttempts = 5
	// restartTimeout bounds how long Restart retries binding the same port.
	restartTimeout = 5 * time.Second
	// restartBackoff is the pause between two Restart attempts.
	restartBackoff = 50 * time.Millisecond
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
)

// Server is a redis-server process owned by one test. It is created by
// [Start] and stopped when the test ends.
//
// A Server is safe for concurrent use. Its methods report failures with the
// Fatalf method of the testing.TB given to Start, so call them from the
// goroutine running that test.
type Server struct {
	tb       testing.TB
	bin      string   // absolute path of redis-server
	args     []string // extra command-line arguments from the caller
	dir      string   // working directory, removed by t.TempDir
	logPath  string   // redis-server's stdout and stderr, appended across restarts
	password string   // value of --requirepass, if any

	confPath  string // config file given as the first argument, or ""
	readyLine string // what the log says once the server listens

	// port and busPort (the cluster bus port, 0 if none) are set once by
	// Start before the Server is returned and are immutable afterwards.
	port, busPort int
	clusterBus    bool // Start picks a busPort

	mu      sync.Mutex // guards the fields below
	proc    *process   // nil while the server is not running
	logFile *os.File   // nil after cleanup
}

// Start starts redis-server on 127.0.0.1 and a free port, waits until it
// answers PING, and stops it in t.Cleanup.
//
// args are extra redis-server command-line arguments, for example
// "--requirepass", "secret". They must not set bind, port, dir, daemonize,
// logfile, save or appendonly, which Start controls: the server listens on
// loopback only, keeps no data on disk, and logs to a file the test prints
// when it fails.
//
// If redis-server is not on PATH, Start calls t.Fatalf with the command that
// installs it. It never skips the test.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, serverConfig{args: args})
}

// serverConfig is what the cluster and sentinel helpers add to [Start].
type serverConfig struct {
	args []string
	// conf, if not empty, is written to a file given to redis-server as its
	// first argument (Sentinel needs a config file it can rewrite).
	conf string
	// sentinel runs the server in Sentinel mode.
	sentinel bool
	// clusterBus picks a second free port for --cluster-port.
	clusterBus bool
}

// Installed returns nil if redis-server is on PATH, or an error saying how
// to install it. ([Start] fails the test with that error; the exported
// test kit, package tiertest, skips instead.)
func Installed() error {
	_, err := lookPath()
	return err
}

func lookPath() (string, error) {
	bin, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("redistest: %s not found on PATH (%w); install it with: %s", binary, err, installHint)
	}
	return bin, nil
}

// start is [Start] with the options of serverConfig.
func start(t testing.TB, cfg serverConfig) *Server {
	t.Helper()
	bin, err := lookPath()
	if err != nil {
		t.Fatalf("%v", err)
	}
	password, err := checkArgs(cfg.args)
	if err != nil {
		t.Fatalf("%v", err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("redistest: create log: %v", err)
	}
	s := &Server{
		tb:         t,
		bin:        bin,
		args:       append([]string(nil), cfg.args...),
		dir:        dir,
		logPath:    logPath,
		password:   password,
		readyLine:  readyLine,
		clusterBus: cfg.clusterBus,
		logFile:    logFile,
	}
	if cfg.sentinel {
		s.readyLine = sentinelReadyLine
		s.args = append([]string{"--sentinel"}, s.args...)
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(s.cleanup)
	if cfg.conf != "" {
		s.confPath = filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(s.confPath, []byte(cfg.conf), 0o600); err != nil {
			t.Fatalf("redistest: write config: %v", err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: pick a free port: %v", err)
		}
		s.port = port
		if s.clusterBus {
			if s.busPort, err = freePortOtherThan(port); err != nil {
				t.Fatalf("redistest: pick a free port: %v", err)
			}
		}
		p, err := s.launch()
		if err == nil {
			s.proc = p
			return s
		}
		// Another process may have taken the port between freePort closing
		// its listener and redis-server binding it; try another one.
		if !errors.Is(err, errAddrInUse) || attempt == portAttempts {
			t.Fatalf("%v\n%s", err, s.readLog(0))
		}
	}
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort(host, strconv.Itoa(s.port))
}

// Port returns the server's TCP port. It stays the same across
// [Server.Restart].
func (s *Server) Port() int {
	return s.port
}

// Options returns new go-redis client options for the server: its address
// and, if the server was started with --requirepass, its password. The caller
// may change them before passing them to redis.NewClient.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:     s.Addr(),
		Password: s.password,
		// tiercache's goredis backend requires it: the cache bounds every
		// Redis call by its own timeout.
		ContextTimeoutEnabled: true,
	}
}

// Client returns a new go-redis client for the server, built from
// [Server.Options], and closes it in t.Cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() {
		// The test may have closed the client itself; a second Close only
		// reports "client is closed", which is not worth failing the test.
		_ = c.Close()
	})
	return c
}

// Kill sends SIGKILL to the server and waits for the process to exit. Data
// is lost and clients see their connections reset. Kill does nothing if the
// server is not running.
func (s *Server) Kill() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// Stop sends SIGTERM to the server and waits for it to shut down, resuming it
// first if it is paused. If it has not exited after 10 s it is killed. Stop
// does nothing if the server is not running, so calling it twice is safe.
func (s *Server) Stop() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart starts the server again on the same port, empty, and waits until it
// answers PING. It works after [Server.Kill] or [Server.Stop]; if the server
// is still running, Restart stops it first.
//
// NOTE: the port may briefly be unavailable after the previous process exits,
// so Restart retries for up to 5 s before it fails the test.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	deadline := time.Now().Add(restartTimeout)
	for {
		off := s.logSize()
		p, err := s.launch()
		if err == nil {
			s.proc = p
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			s.tb.Fatalf("%v\n%s", err, s.readLog(off))
		}
		// A retry loop in the helper, not a test synchronising on time.
		time.Sleep(restartBackoff)
	}
}

// Pause sends SIGSTOP to the server, which then keeps its connections open
// but answers nothing, like a server stuck in a long pause. Pause returns
// once the process has stopped. Call [Server.Resume] to continue it; the
// test cleanup resumes it anyway before stopping it.
func (s *Server) Pause() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.tb.Fatalf("redistest: pause: server %s is not running", s.Addr())
	}
	if s.proc.paused {
		return
	}
	if err := pause(s.proc.cmd.Process); err != nil {
		s.tb.Fatalf("redistest: pause: %v", err)
	}
	s.proc.paused = true
}

// Resume sends SIGCONT to a server stopped by [Server.Pause]. It does nothing
// if the server is not paused.
func (s *Server) Resume() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resumeLocked(); err != nil {
		s.tb.Fatalf("%v", err)
	}
}

// resumeLocked continues a paused process. s.mu must be held.
func (s *Server) resumeLocked() error {
	if s.proc == nil || !s.proc.paused {
		return nil
	}
	if err := resume(s.proc.cmd.Process); err != nil {
		return err
	}
	s.proc.paused = false
	return nil
}

// killLocked kills the process, if any, and waits for it. s.mu must be held.
func (s *Server) killLocked() {
	if s.proc == nil {
		return
	}
	// SIGKILL also ends a stopped process, but resume it first so that it
	// never lingers in the stopped state if the kill fails.
	if err := s.resumeLocked(); err != nil {
		s.tb.Errorf("%v", err)
	}
	s.proc.kill()
	s.proc = nil
}

// stopLocked stops the process gracefully, if any, and waits for it. s.mu
// must be held.
func (s *Server) stopLocked() {
	if s.proc == nil {
		return
	}
	if err := s.resumeLocked(); err != nil {
		s.tb.Errorf("%v", err)
	}
	p := s.proc
	s.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.tb.Errorf("redistest: stop: %v", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		s.tb.Errorf("redistest: stop: redis-server did not exit %v after SIGTERM; killing it", stopTimeout)
		p.kill()
	}
}

// cleanup kills the server and, if the test failed, prints its log.
func (s *Server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	if s.logFile != nil {
		if err := s.logFile.Close(); err != nil {
			s.tb.Errorf("redistest: close log: %v", err)
		}
		s.logFile = nil
	}
	if s.tb.Failed() {
		s.tb.Logf("redistest: redis-server %s log:\n%s", s.Addr(), s.readLog(0))
	}
}

// freePortOtherThan returns a free loopback TCP port other than port.
func freePortOtherThan(port int) (int, error) {
	for {
		p, err := freePort()
		if err != nil || p != port {
			return p, err
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, err
	}
	return port, nil
}
