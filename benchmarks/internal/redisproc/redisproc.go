// Package redisproc starts a private redis-server for the benchmarks and the
// load generator: loopback only, no persistence, on a free port, stopped by
// [Server.Close]. When REDIS_ADDR is set it uses that server instead and
// starts nothing.
//
// The root module's internal/redistest cannot be imported from this module
// (Go's internal rule), and it is tied to testing.TB; this is the small
// starter a benchmark binary and a command can both use.
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvAddr names the variable that points the benchmarks at an existing
// Redis instead of a private one.
const EnvAddr = "REDIS_ADDR"

// startTimeout bounds how long Start waits for the server to answer PING.
const startTimeout = 10 * time.Second

// Server is a redis-server process owned by the caller, or an external
// server named by REDIS_ADDR. It is safe for concurrent use.
type Server struct {
	addr  string
	owned bool
	dir   string

	mu     sync.Mutex // guards cmd
	cmd    *exec.Cmd  // nil when not owned or once killed
	exited chan error // receives cmd.Wait's result once
}

// Start starts redis-server on 127.0.0.1 and a free port and waits until it
// answers PING, or returns the server named by REDIS_ADDR if that is set.
func Start() (*Server, error) {
	if a := os.Getenv(EnvAddr); a != "" {
		if err := waitPing(a, startTimeout); err != nil {
			return nil, fmt.Errorf("redisproc: %s=%s: %w", EnvAddr, a, err)
		}
		return &Server{addr: a}, nil
	}
	return StartOwned()
}

// StartOwned always starts a private redis-server, ignoring REDIS_ADDR. Use
// it where the benchmark must kill the server.
func StartOwned() (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redisproc: redis-server not on PATH (install it with: apt-get install -y redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "tiercache-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		logPath := filepath.Join(dir, "redis.log")
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", logPath)
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("redisproc: start redis-server: %w", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if err := waitPingOrExit(addr, startTimeout, exited); err == nil {
			return &Server{addr: addr, owned: true, dir: dir, cmd: cmd, exited: exited}, nil
		} else {
			lastErr = err
		}
		_ = cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(logPath)
		if !strings.Contains(string(log), "Address already in use") {
			return nil, fmt.Errorf("redisproc: redis-server on %s: %w\n%s", addr, lastErr, log)
		}
	}
	return nil, fmt.Errorf("redisproc: no free port after 5 tries: %w", lastErr)
}

// Addr returns "host:port".
func (s *Server) Addr() string { return s.addr }

// Owned reports whether this process started the server (and so may kill it).
func (s *Server) Owned() bool { return s.owned }

// Kill sends SIGKILL to an owned server; its port is then closed. It does
// nothing for an external server or one already killed.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	err := s.cmd.Process.Kill()
	s.cmd = nil
	<-s.exited // the process is gone and its port closed
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("redisproc: kill: %w", err)
	}
	return nil
}

// Close kills an owned server and removes its directory. It is idempotent.
func (s *Server) Close() error {
	err := s.Kill()
	if s.owned && s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
	return err
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago; it
// is also what a benchmark uses as "a closed port" for Redis-down runs.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisproc: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPing(addr string, timeout time.Duration) error {
	return waitPingOrExit(addr, timeout, nil)
}

func waitPingOrExit(addr string, timeout time.Duration, exited <-chan error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case werr := <-exited:
			return fmt.Errorf("redis-server exited: %v", werr)
		default:
		}
		if err = ping(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %v: %w", timeout, err)
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
