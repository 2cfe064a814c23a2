//go:build !unix

package redistest

import (
	"errors"
	"os"
	"syscall"
)

// errUnsupported reports that the platform cannot stop and continue a process.
var errUnsupported = errors.New("redistest: pause and resume need a Unix system")

// sysProcAttr returns nil: only Linux can tie the child's life to ours.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// pause is not supported here.
func pause(*os.Process) error { return errUnsupported }

// resume is not supported here.
func resume(*os.Process) error { return errUnsupported }
