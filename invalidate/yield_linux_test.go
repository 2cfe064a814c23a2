package invalidate_test

import "syscall"

// yieldCPU gives the CPU to any other runnable thread (sched_yield) and
// returns at once when there is none, so that BenchmarkDelivery's polling
// loop does not keep a CPU from the threads that deliver the invalidation.
// runtime.Gosched made the tail the loop's own (p99 ~14 ms against the
// floor's 33 µs on this 2-vCPU machine).
func yieldCPU() { _, _, _ = syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
