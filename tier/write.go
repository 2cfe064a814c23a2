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
		case !c.epochUsable():
			l2err = c.errEpoch()
		default:
			l2err = c.l2Set(ctx, key, enc, ttl+c.o.FailSafe)
		}
	}
	if l2err != nil {
		// L2 may still hold the old value: replay as a Delete, and tell
		// the other instances then.
		return c.queue("set", []string{key}, nil, c.remoteOps(), l2err)
	}
	if c.pub != nil {
		if err := c.publish(ctx, []string{key}, nil); err != nil {
			return c.queue("set", []string{key}, nil, opPub, err)
		}
	}
	return nil
}

var (
	errBreakerOpen  = errors.New("circuit breaker open")
	errEpochUnknown = errors.New("namespace epoch not read from L2 yet")
	errEpochOwed    = errors.New("the namespace owes a move to its next epoch (L2 is not used until it is made)")
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
// seconds). When L2 cannot be reached the move is owed: this instance
// stops reading L2 until it has made it (as soon as L2 answers), and
// reports [ErrL2]. Other errors are as for [Cache.Delete].
func (c *Cache[V]) InvalidateAll(ctx context.Context) error {
	if c.isClosed() {
		return ErrClosed
	}
	c.untrust(c.now()+1, ReasonInvalidateAll)
	if c.l2 == nil && c.pub == nil {
		return nil
	}
	var err error
	if c.l2 != nil {
		err = c.clearL2(ctx)
		// A read that began before the new epoch was in use may have read
		// the old one's value into L1: distrust those reads too.
		c.raiseTrustFloor(c.now() + 1)
	}
	switch {
	case err != nil && c.epocher != nil:
		// The move publishes the clear once it is made.
		c.oweEpochMove(ReasonInvalidateAll)
		return fmt.Errorf("tier: invalidate all: %w: %w (the namespace moves to its next epoch when L2 answers)", ErrL2, err)
	case c.pub == nil:
	case c.publish(ctx, nil, []string{epochTag}) != nil && err == nil:
		c.out.pubClear.Store(true)
		c.out.wake()
		return fmt.Errorf("tier: invalidate all: %w: publish failed (kept for replay)", ErrL2)
	}
	if err != nil {
		return fmt.Errorf("tier: invalidate all: %w: %w", ErrL2, err)
	}
	return nil
}

// clearL2 moves the namespace to its next epoch in L2.
func (c *Cache[V]) clearL2(ctx context.Context) error {
	switch {
	case c.epocher == nil:
		return errNoEpoch
	case !c.br.allow():
		return errBreakerOpen
	case !c.epochUsable():
		return c.errEpoch()
	}
	var n int64
	err := c.l2Op(ctx, OpL2Set, "", func(ctx context.Context) (err error) {
		n, err = c.epocher.NextEpoch(ctx, c.epochK)
		return err
	})
	if err == nil {
		c.setEpoch(n)
	}
	return err
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
	left, err := c.invalidate(ctx, keys, nil, true)
	if c.l2 != nil {
		// A read that began between the drop above and the L2 DEL may have
		// read the old value from L2 and put it in L1: drop it again.
		c.dropLocal(keys, true)
	}
	if err != nil {
		return c.queue("delete", keys, nil, left, err)
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
	if left, err := c.invalidate(ctx, nil, tags, true); err != nil {
		return c.queue("invalidate tags", nil, tags, left, err)
	}
	return nil
}

// invalidate does the remote part of an invalidation of keys and tags:
// the L2 step (DEL of the keys, which also removes their leases; the tags'
// times), then one message to the other instances. It returns the steps
// left to do when it fails. useBreaker is false for replays, which are the
// probes that find L2 back.
func (c *Cache[V]) invalidate(ctx context.Context, keys, tags []string, useBreaker bool) (left pendingOps, err error) {
	if c.l2 != nil {
		if err := c.invalidateL2(ctx, keys, tags, useBreaker); err != nil {
			return c.remoteOps(), err
		}
	}
	if c.pub != nil {
		if err := c.publish(ctx, keys, tags); err != nil {
			return opPub, err
		}
	}
	return 0, nil
}

// remoteOps are the steps of an invalidation this cache makes: the L2 step
// if it has an L2, the message if it has an invalidator.
func (c *Cache[V]) remoteOps() pendingOps {
	var ops pendingOps
	if c.l2 != nil {
		ops |= opL2
	}
	if c.pub != nil {
		ops |= opPub
	}
	return ops
}

// invalidateL2 is the L2 step of an invalidation of keys and tags.
func (c *Cache[V]) invalidateL2(ctx context.Context, keys, tags []string, useBreaker bool) error {
	if useBreaker && !c.br.allow() {
		return errBreakerOpen
	}
	if !c.epochUsable() {
		return c.errEpoch()
	}
	if len(keys) > 0 {
		if err := c.l2Delete(ctx, keys...); err != nil {
			return err
		}
	}
	if len(tags) > 0 && c.tagger != nil {
		tagKeys := make([]string, len(tags))
		for i, t := range tags {
			tagKeys[i] = c.tagPfx + t
		}
		at := c.now()
		return c.l2Op(ctx, OpL2Set, "", func(ctx context.Context) error {
			return c.tagger.TouchTags(ctx, tagKeys, at, time.Duration(c.tags.horizon+c.tags.skew))
		})
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

// queue keeps the steps left of a failed invalidation for replay and
// returns the error the caller gets (matching ErrL2). What cannot be kept
// (the outbox is full) is not lost: the namespace then owes a move to its
// next epoch, which makes every key of this epoch unreachable, and makes it
// as soon as L2 answers.
func (c *Cache[V]) queue(op string, keys, tags []string, left pendingOps, err error) error {
	switch c.out.add(keys, tags, left) {
	case addKept:
		return fmt.Errorf("tier: %s: %w: %w (kept for replay)", op, ErrL2, err)
	case addCovered:
		return fmt.Errorf("tier: %s: %w: %w (covered by the namespace's owed epoch move)", op, ErrL2, err)
	}
	c.ctr.invOverflows.Add(uint64(len(keys) + len(tags)))
	if c.l2 != nil && c.epocher == nil {
		// No epoch to move: the L2 step is lost. The other instances at
		// least drop their L1.
		c.out.pubClear.Store(true)
		c.out.wake()
		c.obs.Event(context.Background(), Event{Cache: c.o.Name, Kind: EventEpochOwed, Tier: TierL2, Reason: ReasonInvalidationOverflow, Err: errNoEpoch})
		return fmt.Errorf("tier: %s: %w: %w (replay queue full, and L2 cannot move epochs: the L2 step is lost)", op, ErrL2, err)
	}
	if c.l2 == nil {
		c.out.pubClear.Store(true) // the other instances drop all of L1
		c.out.wake()
		return fmt.Errorf("tier: %s: %w: %w (replay queue full: the other instances will drop their L1)", op, ErrL2, err)
	}
	c.oweEpochMove(ReasonInvalidationOverflow)
	return fmt.Errorf("tier: %s: %w: %w (replay queue full: the namespace moves to its next epoch when L2 answers)", op, ErrL2, err)
}

// replay retries the queued invalidations until Close, makes the epoch
// move the namespace owes, and keeps the namespace's epoch current. It
// runs on its own goroutine, counted by c.bg.
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
			switch now := time.Now(); {
			case c.out.owing.Load():
				c.moveEpoch(c.stop)
			case !c.epochKnown.Load() || c.epochStale.Load() || now.Sub(lastEpoch) >= epochRefresh:
				lastEpoch = now
				c.readEpoch(c.stop)
			}
		}
		c.replayPending(c.stop)
	}
}

// replayPending retries every queued step once. An entry leaves the
// outbox only when all its steps succeeded.
func (c *Cache[V]) replayPending(ctx context.Context) {
	if c.out.pubClear.Load() && !c.out.owing.Load() && c.pub != nil {
		if c.out.pubClear.CompareAndSwap(true, false) && c.publish(ctx, nil, []string{epochTag}) != nil {
			c.out.pubClear.Store(true)
		}
	}
	entries := c.out.snapshot()
	if len(entries) == 0 {
		return
	}
	var keys, tags []string
	for _, e := range entries {
		if e.tag {
			tags = append(tags, e.name)
		} else {
			keys = append(keys, e.name)
		}
	}
	// Entries whose L2 step is done need only the message.
	var l2Keys, l2Tags []string
	for _, e := range entries {
		if e.ops&opL2 == 0 {
			continue
		}
		if e.tag {
			l2Tags = append(l2Tags, e.name)
		} else {
			l2Keys = append(l2Keys, e.name)
		}
	}
	l2ok := true
	if c.l2 != nil && len(l2Keys)+len(l2Tags) > 0 {
		l2ok = c.invalidateL2(ctx, l2Keys, l2Tags, false) == nil
	}
	pubOK := true
	if c.pub != nil && l2ok {
		pubOK = c.publish(ctx, keys, tags) == nil
	}
	for i := range entries {
		e := &entries[i]
		if l2ok {
			e.ops &^= opL2
		}
		if pubOK && l2ok {
			e.ops &^= opPub
		}
	}
	if done := c.out.settle(entries); done > 0 {
		c.ctr.replayed.Add(uint64(done))
	}
}
