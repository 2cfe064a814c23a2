package redistest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stoppedTimeout bounds how long pause waits for the process to stop.
const stoppedTimeout = 5 * time.Second

// sysProcAttr makes the kernel kill redis-server if the test binary dies
// without running its cleanups, for example on a test timeout.
//
// NOTE: Pdeathsig fires when the OS thread that started the child exits, not
// only the process. The Go runtime ends threads only when a goroutine that
// called runtime.LockOSThread exits while locked, which tests here do not do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// pause sends SIGSTOP and waits until the kernel reports the process as
// stopped, so that the caller's next request cannot slip in before it.
func pause(p *os.Process) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redistest: SIGSTOP: %w", err)
	}
	deadline := time.Now().Add(stoppedTimeout)
	for {
		state, err := procState(p.Pid)
		if err != nil {
			return fmt.Errorf("redistest: read state of pid %d: %w", p.Pid, err)
		}
		if state == 'T' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: pid %d not stopped after %v (state %c)", p.Pid, stoppedTimeout, state)
		}
		time.Sleep(time.Millisecond)
	}
}

// resume sends SIGCONT.
func resume(p *os.Process) error {
	if err := p.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redistest: SIGCONT: %w", err)
	}
	return nil
}

// procState returns the state letter from /proc/PID/stat, for example 'S'
// (sleeping) or 'T' (stopped).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The format is "pid (comm) state ...", and comm may contain spaces
	// or parentheses, so look after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, fmt.Errorf("unexpected format %q", s)
	}
	return s[i+2], nil
}
