package tier

// WaitL1 blocks until the L1 writes c made so far are visible, for tests
// outside the package that count what L1 holds.
func WaitL1[V any](c *Cache[V]) { c.l1.Wait() }

// WireSchema is the schema tag c writes into its L2 envelopes.
func WireSchema[V any](c *Cache[V]) uint32 { return c.tag }
