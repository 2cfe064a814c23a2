//go:build !linux

package invalidate_test

import "runtime"

// yieldCPU falls back to runtime.Gosched where sched_yield is not at hand.
func yieldCPU() { runtime.Gosched() }
