package tier

// l2call.go: every call to L2, each reported to the observer and counted
// by the breaker of the L2 shard it goes to, within L2Timeout.

import (
	"context"
	"errors"
	"sync"
	"time"
)

// l2Get reads the bytes of key, whose full L2 key is full (on the shard of
// br), and, with a TagStore, the invalidation times of tags, within ctx's
// deadline. err is not nil when L2 failed; b is nil for a miss or a value
// refused and deleted.
func (c *Cache[V]) l2Get(ctx context.Context, br *shard, key, full string, tags []string) (b []byte, tagAt []int64, err error) {
	op := c.describe(OpL2Get, key)
	ctx = c.obs.Begin(ctx, op)
	t0 := c.opStart()
	if len(tags) > 0 && c.tagger != nil {
		tagKeys := make([]string, len(tags))
		for i, t := range tags {
			tagKeys[i] = c.tagPfx + t
		}
		b, tagAt, err = c.tagger.GetTagged(ctx, full, tagKeys)
	} else {
		b, err = c.l2.Get(ctx, full)
	}
	res := Result{Duration: opDuration(t0)}
	switch {
	case err == nil:
		br.Success()
		res.Hit = !isLease(b)
	case errors.Is(err, ErrNotFound):
		br.Success()
		b, err = nil, nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
		br.Success()
		c.corrupt(ctx, key, err)
		b, err = nil, nil
	case c.isClosed(): // closing: not Redis's fault
		res.Err = err
	default:
		c.l2Failed(ctx, br, key, err)
		res.Err = err
	}
	c.obs.End(ctx, op, res)
	return b, tagAt, err
}

// l2GetWithin is l2Get with a fresh L2Timeout.
func (c *Cache[V]) l2GetWithin(ctx context.Context, key string, tags []string) ([]byte, []int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	full := c.Key(key)
	return c.l2Get(ctx, c.breakerOfFull(full), key, full, tags)
}

// l2GetMany reads keys, whose full L2 keys are full, all on the shard of
// br, in one round trip, within L2Timeout: bs[i] is the bytes of keys[i],
// nil for a miss. err is not nil when L2 failed.
func (c *Cache[V]) l2GetMany(ctx context.Context, br *shard, keys, full []string) (bs [][]byte, err error) {
	op := c.describe(OpL2Get, "")
	if len(keys) == 1 {
		op = c.describe(OpL2Get, keys[0])
	}
	ctx = c.obs.Begin(ctx, op)
	t0 := c.opStart()
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	bs, err = c.l2.GetMany(l2ctx, full)
	cancel()
	res := Result{Duration: opDuration(t0)}
	switch {
	case err == nil:
		br.Success()
		for _, b := range bs {
			res.Hit = res.Hit || (b != nil && !isLease(b))
		}
	case c.isClosed():
		res.Err = err
	default:
		c.l2Failed(ctx, br, "", err)
		res.Err = err
	}
	c.obs.End(ctx, op, res)
	return bs, err
}

// l2LeaseWithin is l2Lease with a fresh L2Timeout.
func (c *Cache[V]) l2LeaseWithin(ctx context.Context, key, lease string, replace bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	full := c.Key(key)
	return c.l2Lease(ctx, c.breakerOfFull(full), key, full, lease, replace)
}

// l2Lease takes the lease of key (full L2 key full, on the shard of br) or
// returns what it holds, within ctx's deadline. Bad bytes are reported and
// deleted, and returned as an error matching ErrCorrupt or
// ErrValueTooLarge.
//
// With a WriteCarrier L2, the round trip is shared with the other misses of
// the shard (leasegroup.go) and carries the leased writes queued for it
// (carry.go).
func (c *Cache[V]) l2Lease(ctx context.Context, br *shard, key, full, lease string, replace bool) (cur []byte, err error) {
	ttl := c.o.LoadTimeout + c.o.L2Timeout
	err = c.l2CallHit(ctx, br, OpL2Lease, key, func(ctx context.Context) (bool, error) {
		if c.carrier != nil && !replace && !c.shardUnknown(br) {
			cur, err = c.leaseShared(ctx, br, full, lease, ttl)
		} else {
			cur, err = c.leaser.Lease(ctx, full, lease, ttl, replace)
		}
		return cur != nil && !isLease(cur), err
	})
	switch {
	case err == nil:
		return cur, nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
		// Bad bytes: they were counted; replace them under a lease.
		c.corrupt(ctx, key, err)
		return nil, err
	}
	if isL2Failure(err) && !c.isClosed() {
		c.l2FailedEvent(ctx, key, err)
	}
	return nil, err
}

func (c *Cache[V]) l2Set(ctx context.Context, key string, enc []byte, ttl time.Duration) error {
	return c.l2Op(ctx, OpL2Set, key, func(ctx context.Context) error {
		return c.l2.Set(ctx, c.Key(key), enc, ttl)
	})
}

func (c *Cache[V]) l2SetLeased(ctx context.Context, key, lease string, enc []byte, ttl time.Duration) (ok bool, err error) {
	err = c.l2Op(ctx, OpL2Set, key, func(ctx context.Context) error {
		ok, err = c.leaser.SetLeased(ctx, c.Key(key), lease, enc, ttl)
		return err
	})
	return ok, err
}

// l2Delete deletes keys (the user's keys) from L2: one call per shard,
// each accounted to its shard's breaker. It returns the keys it could not
// delete and the first error.
func (c *Cache[V]) l2Delete(ctx context.Context, keys ...string) (failed []string, err error) {
	return c.perShard(keys, func(br *shard, keys, full []string) error {
		key := ""
		if len(keys) == 1 {
			key = keys[0]
		}
		return c.l2OpOn(ctx, br, OpL2Delete, key, func(ctx context.Context) error {
			return c.l2.Delete(ctx, full...)
		})
	})
}

// perShard groups keys (the user's keys) by the shard of their full L2
// keys and calls f once per shard, concurrently when there are several, so
// that a slow or dead shard does not hold back the others. It returns the
// keys of the shards whose call failed and the first error.
func (c *Cache[V]) perShard(keys []string, f func(br *shard, keys, full []string) error) (failed []string, err error) {
	pfx := c.epoch.Load().pfx
	return c.perShardFull(keys, func(k string) string { return pfx + k }, f)
}

// perShardFull is perShard with fullOf naming the full L2 key of each
// name (a user's key, or a tag).
func (c *Cache[V]) perShardFull(names []string, fullOf func(string) string, f func(br *shard, names, full []string) error) (failed []string, err error) {
	type group struct {
		names, full []string
		err         error
	}
	groups := map[string]*group{}
	var order []*group
	for _, n := range names {
		full := fullOf(n)
		shard := c.shardOf(full)
		g := groups[shard]
		if g == nil {
			g = &group{}
			groups[shard] = g
			order = append(order, g)
		}
		g.names = append(g.names, n)
		g.full = append(g.full, full)
	}
	if len(order) == 1 {
		for shard, g := range groups {
			if err := f(c.brs.of(shard), g.names, g.full); err != nil {
				return g.names, err
			}
		}
		return nil, nil
	}
	var wg sync.WaitGroup
	for shard, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.err = f(c.brs.of(shard), g.names, g.full)
		}()
	}
	wg.Wait()
	for _, g := range order {
		if g.err != nil {
			failed = append(failed, g.names...)
			if err == nil {
				err = g.err
			}
		}
	}
	return failed, err
}

// l2Op runs one L2 operation on the user's key with the observer and the
// accounting of the key's shard's breaker, within L2Timeout (and ctx's own
// deadline, if sooner).
func (c *Cache[V]) l2Op(ctx context.Context, op Op, key string, f func(ctx context.Context) error) error {
	return c.l2OpOn(ctx, c.breakerOf(key), op, key, f)
}

// l2OpOn is l2Op with the breaker br (for operations on other keys than
// one user's key: several keys of one shard, tag times, the epoch).
func (c *Cache[V]) l2OpOn(ctx context.Context, br *shard, op Op, key string, f func(ctx context.Context) error) error {
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	return c.l2CallHit(l2ctx, br, op, key, func(ctx context.Context) (bool, error) { return false, f(ctx) })
}

// l2CallHit runs an operation that can find a value (reported as
// Result.Hit) within ctx's deadline, accounted to br.
func (c *Cache[V]) l2CallHit(ctx context.Context, br *shard, op Op, key string, f func(ctx context.Context) (bool, error)) error {
	desc := c.describe(op, key)
	ctx = c.obs.Begin(ctx, desc)
	t0 := c.opStart()
	hit, err := f(ctx)
	switch {
	case !isL2Failure(err):
		br.Success()
	case errors.Is(err, errNotSent): // Redis was not asked
		br.Unused() // if it was the half-open breaker's probe, another goes
	case !c.isClosed(): // closing: not Redis's fault
		c.ctr.l2Errors.Add(1)
		br.Failure()
	}
	res := Result{Hit: hit && err == nil, Duration: opDuration(t0)}
	if isL2Failure(err) {
		res.Err = err // a miss or bad bytes (reported as a decode error) is not a failure
	}
	c.obs.End(ctx, desc, res)
	return err
}

// isL2Failure reports whether err means L2 did not answer properly (as
// opposed to answering "missing" or "bad bytes").
func isL2Failure(err error) bool {
	return err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrValueTooLarge)
}

// corrupt reports bad bytes that L2 refused to hand over under key (the
// Remote's ErrCorrupt or ErrValueTooLarge) and deletes them.
func (c *Cache[V]) corrupt(ctx context.Context, key string, err error) {
	c.ctr.decodeErrors.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventDecodeError, Key: c.obsKey(key), Tier: TierL2, Err: err})
	_, _ = c.l2Delete(ctx, key) // a failure is counted by l2Delete; the next miss retries.
}

func (c *Cache[V]) l2Failed(ctx context.Context, br *shard, key string, err error) {
	c.ctr.l2Errors.Add(1)
	br.Failure()
	c.l2FailedEvent(ctx, key, err)
}

// l2FailedEvent reports a read that falls back because L2 failed.
func (c *Cache[V]) l2FailedEvent(ctx context.Context, key string, err error) {
	reason := ReasonL2Error
	var te interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout()) {
		reason = ReasonL2Timeout
	}
	c.fallback(ctx, key, reason, err)
}

func (c *Cache[V]) fallback(ctx context.Context, key string, reason Reason, err error) {
	c.ctr.fallbacks.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventFallback, Key: c.obsKey(key), Tier: TierL2, Reason: reason, Err: err})
}

// describe describes an operation on key for the observer.
func (c *Cache[V]) describe(op Op, key string) Call {
	return Call{Cache: c.o.Name, Op: op, Key: c.obsKey(key), KeyHashed: key != "" && !c.o.ObserveRawKeys}
}
