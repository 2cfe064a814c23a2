package tier

import (
	"sync/atomic"
	"time"
)

// BreakerState is the state of the L2 circuit breaker.
type BreakerState int32

// The breaker states.
const (
	// BreakerClosed: L2 is used.
	BreakerClosed BreakerState = iota
	// BreakerOpen: L2 is skipped until the cool-down ends.
	BreakerOpen
	// BreakerHalfOpen: one probe call is let through; its outcome closes or
	// reopens the breaker.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half_open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half_open"
	}
	return "unknown"
}

// breaker is a consecutive-failures circuit breaker with one probe in
// half-open state. It is ours rather than sony/gobreaker because the closed
// state, the only one on the hot L2 path, costs one atomic load here, where
// gobreaker takes a mutex twice per call; we need nothing else it offers.
type breaker struct {
	threshold int32
	cooldown  time.Duration
	now       func() int64
	onChange  func(from, to BreakerState)

	state    atomic.Int32
	failures atomic.Int32 // consecutive failures while closed
	since    atomic.Int64 // unix nanos: when it opened, or when the probe began
	opens    atomic.Uint64
}

// allow reports whether an L2 call may go ahead.
func (b *breaker) allow() bool {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return true
	case BreakerOpen:
		if b.now()-b.since.Load() < int64(b.cooldown) {
			return false
		}
		if b.state.CompareAndSwap(int32(BreakerOpen), int32(BreakerHalfOpen)) {
			b.since.Store(b.now())
			b.onChange(BreakerOpen, BreakerHalfOpen)
			return true
		}
		return false
	default: // half-open: a probe is out; let another go if it never reported.
		since := b.since.Load()
		if b.now()-since >= int64(b.cooldown) && b.since.CompareAndSwap(since, b.now()) {
			return true
		}
		return false
	}
}

// success records an L2 call that worked.
func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if s := BreakerState(b.state.Load()); s != BreakerClosed {
		if b.state.CompareAndSwap(int32(s), int32(BreakerClosed)) {
			b.onChange(s, BreakerClosed)
		}
	}
}

// failure records an L2 call that failed.
func (b *breaker) failure() {
	switch s := BreakerState(b.state.Load()); s {
	case BreakerClosed:
		if b.failures.Add(1) >= b.threshold {
			b.open(BreakerClosed)
		}
	case BreakerHalfOpen:
		b.open(BreakerHalfOpen)
	}
}

// open moves the breaker from state from to open. since is stored before
// the state changes, so no reader sees an open breaker with an old since.
func (b *breaker) open(from BreakerState) {
	b.since.Store(b.now())
	if !b.state.CompareAndSwap(int32(from), int32(BreakerOpen)) {
		return
	}
	b.failures.Store(0)
	b.opens.Add(1)
	b.onChange(from, BreakerOpen)
}
