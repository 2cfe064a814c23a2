package benchmarks

import "syscall"

// yieldCPU gives the CPU to any other runnable thread (sched_yield) and
// returns at once when there is none: the polling loop of
// BenchmarkStaleness keeps reading B without sleeping, but does not keep a
// CPU from the threads that deliver the invalidation (redis-server, the
// other P). syscall.Syscall, not RawSyscall, so that the runtime may hand
// this P to another thread while this one waits for the CPU.
func yieldCPU() { _, _, _ = syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
