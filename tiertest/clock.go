package tiertest

import (
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tier"
)

// Clock is a fake clock for tier.Options.Clock: it moves only when told,
// so a test can step past a TTL, a fail-safe window or a breaker's
// cooldown without sleeping. Create it with [NewClock]. It is safe for
// concurrent use.
//
// NOTE: it drives the cache's own decisions (freshness, staleness, fail-
// safe, negative entries). Redis expires keys on its own clock, and L1's
// memory bound (ristretto) and the invalidation bus use real time.
type Clock struct{ ns atomic.Int64 }

var _ tier.Clock = (*Clock)(nil)

// NewClock returns a Clock that reads start until moved.
func NewClock(start time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(start.UnixNano())
	return c
}

// Now implements tier.Clock.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward by d (back, if d is negative).
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }
