package notify

import (
	"sync/atomic"
	"time"
)

// Defaults of the built-in circuit breaker (see Options.Breaker).
const (
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 5 * time.Second
)

// breaker is the default [Breaker]: it opens after a number of consecutive
// failures, refuses calls for a cool-down, then lets one probe through,
// whose outcome closes or reopens it. Closed costs one atomic load.
//
// TODO(breaker): use internal/breaker once it is on main (the write path's
// shared breaker); its shape is this one.
type breaker struct {
	threshold int32
	cooldown  int64 // nanoseconds

	open     atomic.Bool
	failures atomic.Int32 // consecutive failures while closed
	until    atomic.Int64 // unix nanos: when the next probe may go
}

var _ Breaker = (*breaker)(nil)

// NewBreaker returns the built-in breaker: open after failures consecutive
// failures, for cooldown, then one probe at a time.
func NewBreaker(failures int, cooldown time.Duration) Breaker {
	return &breaker{threshold: int32(max(failures, 1)), cooldown: int64(cooldown)}
}

// Allow implements Breaker.
func (b *breaker) Allow() bool {
	if !b.open.Load() {
		return true
	}
	u := b.until.Load()
	now := time.Now().UnixNano()
	return now >= u && b.until.CompareAndSwap(u, now+b.cooldown)
}

// Success implements Breaker.
func (b *breaker) Success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.open.Load() {
		b.open.Store(false)
	}
}

// Failure implements Breaker.
func (b *breaker) Failure() {
	if b.open.Load() {
		b.until.Store(time.Now().UnixNano() + b.cooldown)
		return
	}
	if b.failures.Add(1) >= b.threshold {
		b.until.Store(time.Now().UnixNano() + b.cooldown)
		b.open.Store(true)
		b.failures.Store(0)
	}
}
