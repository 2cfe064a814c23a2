//go:build unix && !linux

package redistest

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr returns nil: only Linux can tie the child's life to ours.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// pause sends SIGSTOP.
func pause(p *os.Process) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redistest: SIGSTOP: %w", err)
	}
	return nil
}

// resume sends SIGCONT.
func resume(p *os.Process) error {
	if err := p.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redistest: SIGCONT: %w", err)
	}
	return nil
}
