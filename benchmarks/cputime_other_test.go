//go:build !unix

package benchmarks

// processCPU reports that the process's CPU time is not at hand here: the
// benchmarks that use it then report wall time only.
func processCPU() (int64, bool) { return 0, false }
