package ratelimit

import (
	"sync/atomic"
	"time"
)

// circuit is what the Limiter needs of a circuit breaker in front of Redis.
// It is the shape of the shared breaker being written for the write path
// (internal/breaker); until that lands on main the Limiter uses its own
// small one, below.
//
// TODO(breaker): switch to internal/breaker once it is on main.
type circuit interface {
	// Allow reports whether a Redis call may go ahead.
	Allow() bool
	// Success records a call that worked.
	Success()
	// Failure records a call that failed with err.
	Failure(err error)
}

// breaker is a consecutive-failures circuit breaker with one probe after
// the cool-down: closed until threshold failures in a row, then open (no
// calls) for cooldown, then half-open: one call goes through and its
// outcome closes or reopens it. Closed costs one atomic load per call. It is
// safe for concurrent use.
type breaker struct {
	threshold int32
	cooldown  int64        // nanoseconds
	now       func() int64 // monotonic nanoseconds

	open     atomic.Bool
	failures atomic.Int32 // consecutive failures while closed
	until    atomic.Int64 // open: when the next probe may go
	opens    atomic.Uint64
}

var _ circuit = (*breaker)(nil)

func newBreaker(threshold int, cooldown time.Duration, now func() int64) *breaker {
	return &breaker{threshold: int32(threshold), cooldown: int64(cooldown), now: now}
}

// Allow reports whether a call may go ahead: always while closed; while
// open, once per cool-down (the probe).
func (b *breaker) Allow() bool {
	if !b.open.Load() {
		return true
	}
	u := b.until.Load()
	now := b.now()
	// One caller wins the probe; the others wait for the next cool-down.
	return now >= u && b.until.CompareAndSwap(u, now+b.cooldown)
}

// Success closes the breaker.
func (b *breaker) Success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.open.Load() {
		b.open.Store(false)
	}
}

// Failure counts a failure; the threshold-th in a row opens the breaker,
// and a failed probe keeps it open for another cool-down.
func (b *breaker) Failure(error) {
	if b.open.Load() {
		return // the probe failed: until already moved on in Allow
	}
	if b.failures.Add(1) >= b.threshold {
		b.until.Store(b.now() + b.cooldown)
		if b.open.CompareAndSwap(false, true) {
			b.opens.Add(1)
		}
		b.failures.Store(0)
	}
}
