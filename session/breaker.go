package session

import "sync/atomic"

// breaker is a consecutive-failures circuit breaker with one probe after
// the cool-down, the same as package ratelimit's (both move to the shared
// internal breaker once it lands). Closed costs one atomic load per call.
// It is safe for concurrent use.
type breaker struct {
	threshold int32
	cooldown  int64        // nanoseconds
	now       func() int64 // nanoseconds

	open     atomic.Bool
	failures atomic.Int32 // consecutive failures while closed
	until    atomic.Int64 // open: when the next probe may go
	opens    atomic.Uint64
}

// allow reports whether a call may go ahead: always while closed; while
// open, once per cool-down (the probe).
func (b *breaker) allow() bool {
	if !b.open.Load() {
		return true
	}
	u := b.until.Load()
	now := b.now()
	return now >= u && b.until.CompareAndSwap(u, now+b.cooldown)
}

// success closes the breaker.
func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.open.Load() {
		b.open.Store(false)
	}
}

// failure counts a failure; the threshold-th in a row opens the breaker.
func (b *breaker) failure() {
	if b.open.Load() {
		return
	}
	if b.failures.Add(1) >= b.threshold {
		b.until.Store(b.now() + b.cooldown)
		if b.open.CompareAndSwap(false, true) {
			b.opens.Add(1)
		}
		b.failures.Store(0)
	}
}
