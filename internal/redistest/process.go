package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

const (
	// readyTimeout bounds how long launch waits for PING to succeed.
	readyTimeout = 10 * time.Second
	// pollInterval is the pause between two readiness checks.
	pollInterval = 10 * time.Millisecond
	// pingTimeout bounds one readiness PING, dial included.
	pingTimeout = 200 * time.Millisecond

	// readyLine is what redis-server logs once it listens. Waiting for it
	// as well as for PING makes sure the PING was answered by our process
	// and not by another server that owns the port.
	readyLine = "Ready to accept connections"
	// sentinelReadyLine is what redis-server --sentinel logs once it
	// listens (it never logs readyLine).
	sentinelReadyLine = "Sentinel ID is"
	// addrInUseLine is what redis-server logs when it cannot bind.
	addrInUseLine = "Address already in use"
)

// errAddrInUse reports that redis-server exited because its port was taken.
var errAddrInUse = errors.New("redistest: address already in use")

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // result of cmd.Wait; read only after done is closed

	paused bool // guarded by Server.mu
}

// kill sends SIGKILL and waits until the process has exited.
func (p *process) kill() {
	// The only error is "process already finished", which is what we want.
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// launch starts redis-server on s.port and waits until it is ready. It
// returns an error wrapping errAddrInUse if the port was taken. s.mu must be
// held.
func (s *Server) launch() (*process, error) {
	off := s.logSize()
	cmd := exec.Command(s.bin, s.commandLine()...)
	cmd.Dir = s.dir
	// An *os.File is handed to the child as is, so no copying goroutine
	// outlives the process.
	cmd.Stdout = s.logFile
	cmd.Stderr = s.logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redistest: start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := s.waitReady(p, off); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// commandLine returns the redis-server arguments for s.port.
func (s *Server) commandLine() []string {
	var args []string
	if s.confPath != "" {
		args = append(args, s.confPath) // must come first
	}
	if s.busPort != 0 {
		args = append(args, "--cluster-port", strconv.Itoa(s.busPort))
	}
	args = append(args,
		"--save", "",
		"--appendonly", "no",
		"--bind", host,
		"--port", strconv.Itoa(s.port),
		"--dir", s.dir,
		"--daemonize", "no",
	)
	return append(args, s.args...)
}

// waitReady polls until p has logged readyLine and answers PING, p exits, or
// readyTimeout passes. off is the size of the log before p started.
func (s *Server) waitReady(p *process, off int64) error {
	addr := s.Addr()
	deadline := time.Now().Add(readyTimeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		if p.exited() {
			if strings.Contains(s.readLog(off), addrInUseLine) {
				return fmt.Errorf("redistest: redis-server on %s: %w", addr, errAddrInUse)
			}
			return fmt.Errorf("redistest: redis-server on %s exited before it was ready: %v", addr, p.err)
		}
		if strings.Contains(s.readLog(off), s.readyLine) && ping(addr) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s did not answer PING within %v", addr, readyTimeout)
		}
		select {
		case <-p.done:
		case <-ticker.C:
		}
	}
}

// ping sends an inline PING to addr and reads one reply line. Any reply
// means the server is serving, even -NOAUTH when it needs a password, except
// the errors a server gives while it is still starting.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, pingTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(pingTimeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	for _, busy := range []string{"-LOADING", "-BUSY", "-MASTERDOWN"} {
		if strings.HasPrefix(line, busy) {
			return errors.New(strings.TrimSpace(line))
		}
	}
	return nil
}

// logSize returns the current size of the log file, or 0 if it is unknown.
func (s *Server) logSize() int64 {
	fi, err := os.Stat(s.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readLog returns the log from byte offset off, or a note saying why it
// cannot.
func (s *Server) readLog(off int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(log unavailable: %v)", err)
	}
	if off > int64(len(b)) {
		off = 0
	}
	return string(b[off:])
}

// reservedArgs are the options Start sets itself. Letting the caller override
// them could expose the server beyond loopback, persist data across Restart,
// or hide its log.
var reservedArgs = map[string]bool{
	"bind":         true,
	"port":         true,
	"dir":          true,
	"daemonize":    true,
	"logfile":      true,
	"cluster-port": true,
	"save":         true,
	"appendonly":   true,
}

// quietLogLevels hide readyLine, which launch waits for.
var quietLogLevels = map[string]bool{"warning": true, "nothing": true}

// checkArgs rejects arguments that conflict with what Start controls and
// returns the value of --requirepass, if any.
func checkArgs(args []string) (password string, err error) {
	for i, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(a, "--"))
		next := ""
		if i+1 < len(args) {
			next = args[i+1]
		}
		switch {
		case reservedArgs[name]:
			return "", fmt.Errorf("redistest: argument %q is set by Start and cannot be overridden", a)
		case name == "loglevel" && quietLogLevels[strings.ToLower(next)]:
			return "", fmt.Errorf("redistest: --loglevel %s hides the line Start waits for; use notice, verbose or debug", next)
		case name == "requirepass":
			password = next
		}
	}
	return password, nil
}
