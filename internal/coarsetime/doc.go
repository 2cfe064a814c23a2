// Package coarsetime is a process-wide clock that is read with one atomic
// load: a goroutine stores the time every [Resolution] while at least one
// user holds it. The cache's L1 hit path reads it instead of time.Now, which
// costs a vDSO call (about a third of a ristretto Get on the machines we
// measured).
//
// It lags the real time by up to Resolution, more when the process is
// starved of CPU; callers use it only where a late answer errs on the
// cheap side (an entry served up to that much past its fresh life), never
// for a bound that must hold.
package coarsetime
