//go:build !linux

package benchmarks

// yieldCPU does nothing where sched_yield is not at hand: the polling loop
// of BenchmarkStaleness then spins, holding a CPU, and its figures carry
// that cost (see BenchmarkStaleness). runtime.Gosched is not a substitute:
// it made every tail worse on Linux.
func yieldCPU() {}
