package tier

import (
	"context"
	"fmt"
	"strconv"
)

// epochState is a namespace epoch and the L2 key prefix that names it. It
// is immutable: the cache swaps whole values, so a reader never sees a
// prefix of another epoch than the number beside it.
type epochState struct {
	n   int64
	pfx string // base + n + ":"
}

// setEpoch moves to epoch n (never back) and reports whether it moved.
func (c *Cache[V]) setEpoch(n int64) bool {
	next := &epochState{n: n, pfx: c.base + strconv.FormatInt(n, 10) + ":"}
	for {
		cur := c.epoch.Load()
		if cur != nil && n <= cur.n {
			return false
		}
		if c.epoch.CompareAndSwap(cur, next) {
			return cur != nil
		}
	}
}

// errEpoch is errEpochUnknown with the reason the epoch could not be read.
func (c *Cache[V]) errEpoch() error {
	if p := c.epochErr.Load(); p != nil {
		return fmt.Errorf("%w: %w", errEpochUnknown, *p)
	}
	return errEpochUnknown
}

// readEpoch reads the namespace's epoch from L2. Moving to a newer one
// drops L1: the namespace was cleared.
func (c *Cache[V]) readEpoch(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	n, err := c.epocher.Epoch(ctx, c.epochK)
	if err != nil {
		c.epochErr.Store(&err)
		return
	}
	c.epochStale.Store(false)
	if c.setEpoch(n) && c.epochKnown.Load() {
		sink[V]{c}.Untrust(c.now()+1, "namespace_cleared")
	}
	c.epochKnown.Store(true)
}
