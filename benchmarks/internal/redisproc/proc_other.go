//go:build !linux

package redisproc

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: Close must stop the server.
func dieWithParent(*exec.Cmd) {}
