//go:build unix

package benchmarks

import "syscall"

// processCPU returns the CPU time (user + system, ns) the process has used
// so far, and true.
func processCPU() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}
