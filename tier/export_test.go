package tier

import "time"

// WaitL1 blocks until the L1 writes c made so far are visible, for tests
// outside the package that count what L1 holds.
func WaitL1[V any](c *Cache[V]) { c.l1.Wait() }

// WireSchema is the schema tag c writes into its L2 envelopes.
func WireSchema[V any](c *Cache[V]) uint32 { return c.tag }

// SetCarryWrites makes c wait delay (instead of a fraction of a
// millisecond) before it sends a queued leased write on its own, and call
// onQueue (which must not block) after each write it queues. Call it before
// c is used.
func SetCarryWrites[V any](c *Cache[V], delay time.Duration, onQueue func()) {
	c.wq.mu.Lock()
	defer c.wq.mu.Unlock()
	c.wq.delay, c.wq.onQueue = delay, onQueue
}

// SetLeaseSharing makes c's shards have at most trips lease round trips on
// their way (instead of maxLeaseTrips), and call onQueue (which must not
// block) when a miss queues for one. Call it before c is used.
func SetLeaseSharing[V any](c *Cache[V], trips int, onQueue func()) {
	c.leaseTrips, c.onLeaseQueue = trips, onQueue
}
