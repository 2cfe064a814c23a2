package tier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Set stores v under key in L1 and L2 for ttl (0 means Options.TTL), fences
// the loads of key that are running, and tells the other instances to drop
// their copies. A value too large to cache is refused with a
// [*ValueTooLargeError], and the old value of key is invalidated so it is
// not served after the call. An L2 or invalidator failure returns an error
// matching [ErrL2]; L1 is updated anyway and the invalidation is replayed
// when L2 answers again.
func (c *Cache[V]) Set(ctx context.Context, key string, v V, ttl time.Duration) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	if ttl <= 0 {
		ttl = c.o.TTL
	}
	ttl = c.jitter(ttl)
	now := c.now()
	enc, err := c.encode(v, false, now, ttl)
	if err != nil {
		c.ctr.refused.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventValueRefused, Key: c.obsKey(key), Err: err})
		return errors.Join(fmt.Errorf("tier: set %q: %w", key, err), c.Delete(ctx, key))
	}
	e := c.newEntry(v, false, nil, now, now, min(ttl, c.jitter(c.o.L1TTL)))
	// Until L2 holds v, a caller who misses L1 must not read the old value
	// from L2 and install it: it joins this call instead. A Delete of the
	// key in between fences the call.
	cl := c.fl.put(key, now, v, e.Fresh)
	if cl == nil {
		return ErrClosed
	}
	defer c.fl.forget(key, cl)
	c.setL1(key, e, c.cost(key, v, len(enc)), time.Duration(e.Deadline-now))
	if c.l2 == nil && c.pub == nil {
		return nil
	}
	var l2err error
	if c.l2 != nil {
		switch {
		case !c.br.allow():
			l2err = errBreakerOpen
		case !c.epochKnown.Load():
			l2err = c.errEpoch()
		default:
			l2err = c.l2Set(ctx, key, enc, ttl+c.o.FailSafe)
		}
	}
	if l2err == nil && c.pub != nil {
		l2err = c.publish(ctx, []string{key}, nil)
	}
	if l2err != nil {
		// The other instances must still hear of it: replay as a Delete.
		return c.queue(ctx, "set", []string{key}, nil, l2err)
	}
	return nil
}

var (
	errBreakerOpen  = errors.New("circuit breaker open")
	errEpochUnknown = errors.New("namespace epoch not read from L2 yet")
	errNoEpoch      = errors.New("L2 cannot clear a namespace (it does not implement tier.Epocher)")
)

// epochTag is the reserved tag that carries "the namespace was cleared"
// through the outbox and to the other instances.
const epochTag = "\x00tiercache:epoch"

// InvalidateAll clears the whole namespace, on every instance: this
// instance's L1 at once (in O(1)), L2 by moving the namespace to its next
// epoch (no FLUSHALL, no KEYS: old keys are never read again and expire
// with their TTL), and the other instances' L1 through the invalidator
// (they also re-read the epoch whenever they resubscribe, and every few
// seconds). Errors are as for [Cache.Delete].
func (c *Cache[V]) InvalidateAll(ctx context.Context) error {
	if c.isClosed() {
		return ErrClosed
	}
	sink[V]{c}.Untrust(c.now()+1, "invalidate_all")
	if c.l2 == nil && c.pub == nil {
		return nil
	}
	err := c.invalidate(ctx, nil, []string{epochTag}, true)
	if c.l2 != nil {
		// A read that began before the new epoch was in use may have read
		// the old one's value into L1: distrust those reads too.
		c.raiseTrustFloor(c.now() + 1)
	}
	if err != nil {
		return c.queue(ctx, "invalidate all", nil, []string{epochTag}, err)
	}
	return nil
}

// Delete removes keys from L1 and L2, fences the loads of those keys that
// are running (here, and through the L2 lease, on every instance), and tells
// the other instances to drop their copies. Call it after the origin
// changed. An L2 or invalidator failure returns an error matching [ErrL2];
// L1 is cleared anyway, and the invalidation is kept (bounded by
// Options.MaxPendingInvalidations) and replayed when L2 answers again.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	if c.isClosed() {
		return ErrClosed
	}
	for _, k := range keys {
		if err := c.checkKey(k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	c.dropLocal(keys, true)
	err := c.invalidate(ctx, keys, nil, true)
	if c.l2 != nil {
		// A read that began between the drop above and the L2 DEL may have
		// read the old value from L2 and put it in L1: drop it again.
		c.dropLocal(keys, true)
	}
	if err != nil {
		return c.queue(ctx, "delete", keys, nil, err)
	}
	return nil
}

// InvalidateTags makes every value cached with any of tags (see
// [Cache.GetOrLoadTagged]) whose read began before the call a miss, on
// every instance. It keeps one invalidation time per tag, not a set of keys
// per tag, so it costs the same however many values carry the tag. Errors
// are as for [Cache.Delete].
func (c *Cache[V]) InvalidateTags(ctx context.Context, tags ...string) error {
	if c.isClosed() {
		return ErrClosed
	}
	if len(tags) == 0 {
		return nil
	}
	if slices.Contains(tags, epochTag) {
		return fmt.Errorf("%w: reserved tag", ErrInvalidKey)
	}
	c.tags.touch(tags, c.now())
	if err := c.invalidate(ctx, nil, tags, true); err != nil {
		return c.queue(ctx, "invalidate tags", nil, tags, err)
	}
	return nil
}

// invalidate does the remote part of an invalidation: L2 DEL of the keys
// (which also removes their leases), the tags' times in L2, then one
// message to the other instances. useBreaker is false for replays, which
// are the probes that find L2 back.
func (c *Cache[V]) invalidate(ctx context.Context, keys, tags []string, useBreaker bool) error {
	clearAll := slices.Contains(tags, epochTag)
	if c.l2 != nil {
		if useBreaker && !c.br.allow() {
			return errBreakerOpen
		}
		if !c.epochKnown.Load() {
			return c.errEpoch()
		}
		if clearAll {
			// The namespace moves to the next epoch: every key before it is
			// gone at once (and expires with its TTL); no DEL is needed.
			if c.epocher == nil {
				return errNoEpoch
			}
			var n int64
			err := c.l2Op(ctx, OpL2Set, "", func(ctx context.Context) (err error) {
				n, err = c.epocher.NextEpoch(ctx, c.epochK)
				return err
			})
			if err != nil {
				return err
			}
			c.setEpoch(n)
			keys = nil
		}
		if len(keys) > 0 {
			if err := c.l2Delete(ctx, keys...); err != nil {
				return err
			}
		}
		if tt := slices.DeleteFunc(slices.Clone(tags), func(t string) bool { return t == epochTag }); len(tt) > 0 && c.tagger != nil {
			tagKeys := make([]string, len(tt))
			for i, t := range tt {
				tagKeys[i] = c.tagPfx + t
			}
			at := c.now()
			err := c.l2Op(ctx, OpL2Set, "", func(ctx context.Context) error {
				return c.tagger.TouchTags(ctx, tagKeys, at, time.Duration(c.tags.horizon+c.tags.skew))
			})
			if err != nil {
				return err
			}
		}
	}
	if c.pub != nil {
		return c.publish(ctx, keys, tags)
	}
	return nil
}

func (c *Cache[V]) publish(ctx context.Context, keys, tags []string) error {
	ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	if err := c.pub.Publish(ctx, keys, tags); err != nil {
		return err
	}
	c.ctr.invSent.Add(uint64(len(keys) + len(tags)))
	return nil
}

// queue keeps a failed invalidation for replay and returns the error the
// caller gets. When the outbox is full, this instance drops its own L1 (it
// can no longer tell which of its copies are stale) and says so.
func (c *Cache[V]) queue(ctx context.Context, op string, keys, tags []string, err error) error {
	if c.out.add(keys, tags) {
		return fmt.Errorf("tier: %s: %w: %w (kept for replay)", op, ErrL2, err)
	}
	sink[V]{c}.Untrust(c.now()+1, "invalidation_overflow")
	return fmt.Errorf("tier: %s: %w: %w (replay queue full: L1 dropped)", op, ErrL2, err)
}

// epochRefresh is how often the namespace's epoch is re-read from L2, in
// case a clear was missed.
const epochRefresh = 5 * time.Second

// replay retries the queued invalidations until Close, and keeps the
// namespace's epoch current. It runs on its own
// goroutine, counted by c.bg.
func (c *Cache[V]) replay() {
	defer c.bg.Done()
	t := time.NewTicker(replayInterval)
	defer t.Stop()
	lastEpoch := time.Now()
	for {
		select {
		case <-c.stop.Done():
			return
		case <-t.C:
		case <-c.out.kick:
			continue // wait for the next tick: the failure that queued it is fresh
		}
		if c.epocher != nil {
			if now := time.Now(); !c.epochKnown.Load() || c.epochStale.Load() || now.Sub(lastEpoch) >= epochRefresh {
				lastEpoch = now
				c.readEpoch(c.stop)
			}
		}
		if c.out.len() == 0 {
			continue
		}
		keys, tags := c.out.take()
		if err := c.invalidate(c.stop, keys, tags, false); err != nil {
			if !c.out.add(keys, tags) {
				sink[V]{c}.Untrust(c.now()+1, "invalidation_overflow")
			}
			continue
		}
		c.ctr.replayed.Add(uint64(len(keys) + len(tags)))
	}
}
