package redisproc

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill redis-server when this process dies,
// even without running Close (a crash, a timeout, SIGQUIT), so that a
// benchmark run never leaves a server behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
