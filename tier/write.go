package tier

import (
	"context"
	"errors"
	"fmt"
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
	if err := c.ended(ctx, "set", key); err != nil {
		return err
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
		return errors.Join(fmt.Errorf("tier: set %s: %w", c.errKey(key), err), c.Delete(ctx, key))
	}
	e := c.newEntry(v, false, nil, now, now, min(ttl, c.jitter(c.o.L1TTL)))
	// Until L2 holds v, a caller who misses L1 must not read the old value
	// from L2 and install it: it joins this call instead. A Delete of the
	// key in between fences the call.
	cl, settle := c.fl.put(key, now, v, e.Fresh)
	if cl == nil {
		return ErrClosed
	}
	defer c.fl.forget(key, cl)
	c.setL1(key, e, c.cost(key, v, len(enc)), time.Duration(e.Deadline-now), settle)
	if c.l2 == nil && c.pub == nil {
		return nil
	}
	var left []outEntry
	if c.l2 != nil {
		switch br := c.breakerOf(key); {
		case !br.Allow():
			_, err = br.refused()
		case !c.epochUsable():
			err = c.errEpoch()
		default:
			err = c.l2Set(ctx, key, enc, ttl+c.o.FailSafe)
		}
		if err != nil {
			// L2 may still hold the old value: replay as a Delete.
			left = c.leftL2([]string{key}, nil)
		}
	}
	// The other instances drop their copies whether or not L2 was written.
	if left, err = c.announce(ctx, []string{key}, nil, left, err); err != nil {
		return c.queue("set", left, err)
	}
	return nil
}

var (
	errBreakerOpen   = errors.New("circuit breaker open")
	errShardHeld     = errors.New("L2 shard first seen since the last lineage check: not used until the next one")
	errEpochUnknown  = errors.New("namespace epoch not read from L2 yet")
	errDeletePending = errors.New("a Delete of the key waits for replay (L2 still holds the value it removes)")
	errEpochOwed     = errors.New("the namespace owes a move to its next epoch (L2 is not used until it is made)")
	errNoEpoch       = errors.New("L2 cannot clear a namespace (it does not implement tier.Epocher)")
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
	if err := c.ended(ctx, "invalidate all", ""); err != nil {
		return err
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
		if err != nil && c.epocher != nil {
			// This instance stops using L2 until the move is made; the move
			// tells the other instances again.
			c.oweEpochMove(ReasonInvalidateAll)
			err = fmt.Errorf("%w (the namespace moves to its next epoch when L2 answers)", err)
		}
	}
	// The other instances drop their L1 (and re-read the epoch) whether or
	// not the move could be made.
	if c.pub != nil {
		if perr := c.publish(ctx, nil, []string{epochTag}); perr != nil {
			c.out.pubClear.Store(true)
			c.out.wake()
			err = errors.Join(err, fmt.Errorf("publish: %w (kept for replay)", perr))
		}
	}
	if err != nil {
		return fmt.Errorf("tier: invalidate all: %w: %w", ErrL2, err)
	}
	return nil
}

// clearL2 moves the namespace to its next epoch in L2.
func (c *Cache[V]) clearL2(ctx context.Context) error {
	br := c.breakerOfFull(c.epochK)
	switch {
	case c.epocher == nil:
		return errNoEpoch
	case !br.Allow():
		_, err := br.refused()
		return err
	case !c.epochUsable():
		return c.errEpoch()
	}
	var n int64
	err := c.l2OpOn(ctx, br, OpL2Epoch, "", func(ctx context.Context) (err error) {
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
// L1 is cleared anyway, the other instances are told anyway when only the
// L2 step failed (and again once it is replayed), and what failed is kept
// and replayed when L2 answers again, per key on each key's shard (bounded
// by Options.MaxPendingInvalidations; past it the namespace owes an epoch
// move, see there).
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	if c.isClosed() {
		return ErrClosed
	}
	if err := c.ended(ctx, "delete", ""); err != nil {
		return err
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
		return c.queue("delete", left, err)
	}
	return nil
}

// InvalidateTags makes every value cached with any of tags (see
// [Cache.GetOrLoadTagged]) whose read began before the call a miss, on
// every instance. It keeps one invalidation time per tag, not a set of keys
// per tag, so it costs the same however many values carry the tag. An
// empty tag is refused with [ErrInvalidKey]; other errors are as for
// [Cache.Delete].
func (c *Cache[V]) InvalidateTags(ctx context.Context, tags ...string) error {
	if c.isClosed() {
		return ErrClosed
	}
	if err := c.ended(ctx, "invalidate tags", ""); err != nil {
		return err
	}
	if len(tags) == 0 {
		return nil
	}
	if err := checkTags(tags); err != nil {
		return err
	}
	c.tags.touch(tags, c.now())
	if left, err := c.invalidate(ctx, nil, tags, true); err != nil {
		return c.queue("invalidate tags", left, err)
	}
	return nil
}

// invalidate does the remote part of an invalidation of keys and tags:
// the L2 step of each (DEL of the keys, which also removes their leases;
// the tags' times), one call per L2 shard, then one message naming them
// all, whatever the L2 step did: the other instances must drop their
// copies even when L2 could not be told (a dead shard, an open breaker).
// Those whose L2 step failed are told again once it has been replayed. It
// returns what is left to do and the first error. useBreaker is false for
// replays, which are the probes that find L2 back.
func (c *Cache[V]) invalidate(ctx context.Context, keys, tags []string, useBreaker bool) (left []outEntry, err error) {
	if dp, br, full := c.fusable(keys, tags); dp != nil {
		return c.deleteAndPublish(ctx, dp, br, keys, full, useBreaker)
	}
	if c.l2 != nil {
		var fk, ft []string
		fk, ft, err = c.invalidateL2(ctx, keys, tags, useBreaker)
		left = c.leftL2(fk, ft)
	}
	return c.announce(ctx, keys, tags, left, err)
}

// leftL2 are the outbox entries of keys and tags whose L2 step failed:
// the step, and a message once it is done.
func (c *Cache[V]) leftL2(keys, tags []string) []outEntry {
	ops := opL2
	if c.pub != nil {
		ops |= opRepub
	}
	left := make([]outEntry, 0, len(keys)+len(tags))
	for _, k := range keys {
		left = append(left, outEntry{name: k, outItem: outItem{ops: ops}})
	}
	for _, t := range tags {
		left = append(left, outEntry{name: t, tag: true, outItem: outItem{ops: ops}})
	}
	return left
}

// announce tells the other instances to drop keys and tags (if the cache
// has an invalidator) and adds to left, and to err, what a failed publish
// leaves to do.
func (c *Cache[V]) announce(ctx context.Context, keys, tags []string, left []outEntry, err error) ([]outEntry, error) {
	if c.pub == nil {
		return left, err
	}
	return c.published(keys, tags, left, err, c.publish(ctx, keys, tags))
}

// published adds to left, and to err, what a publish of keys and tags
// that failed with perr leaves to do.
func (c *Cache[V]) published(keys, tags []string, left []outEntry, err, perr error) ([]outEntry, error) {
	if perr == nil {
		return left, err
	}
	for _, k := range keys {
		left = append(left, outEntry{name: k, outItem: outItem{ops: opPub}})
	}
	for _, t := range tags {
		left = append(left, outEntry{name: t, tag: true, outItem: outItem{ops: opPub}})
	}
	if err == nil {
		return left, perr
	}
	return left, errors.Join(err, perr)
}

// invalidateL2 is the L2 step of an invalidation of keys and tags, one
// call per shard (concurrently), each guarded by its shard's breaker when
// useBreaker. It returns the keys and tags whose step failed.
func (c *Cache[V]) invalidateL2(ctx context.Context, keys, tags []string, useBreaker bool) (failedKeys, failedTags []string, err error) {
	if !c.epochUsable() {
		return keys, tags, c.errEpoch()
	}
	if len(keys) > 0 {
		failedKeys, err = c.perShard(keys, func(br *shard, keys, full []string) error {
			if useBreaker && !br.Allow() {
				_, err := br.refused()
				return err
			}
			key := ""
			if len(keys) == 1 {
				key = keys[0]
			}
			return c.l2OpOn(ctx, br, OpL2Delete, key, func(ctx context.Context) error {
				return c.l2.Delete(ctx, full...)
			})
		})
	}
	if len(tags) > 0 && c.tagger != nil {
		at := c.now()
		var terr error
		failedTags, terr = c.perShardFull(tags, func(t string) string { return c.tagPfx + t }, func(br *shard, _, full []string) error {
			if useBreaker && !br.Allow() {
				_, err := br.refused()
				return err
			}
			return c.l2OpOn(ctx, br, OpL2Tags, "", func(ctx context.Context) error {
				return c.tagger.TouchTags(ctx, full, at, time.Duration(c.tags.horizon+c.tags.skew))
			})
		})
		if err == nil {
			err = terr
		}
	}
	return failedKeys, failedTags, err
}

// fusable returns, when the invalidation of keys and tags can be one
// [DeletePublisher.DeleteAndPublish] (keys only, on one L2 shard, which
// the invalidator can reach with its publish), the publisher, the shard's
// breaker and the full L2 keys; otherwise a nil publisher.
func (c *Cache[V]) fusable(keys, tags []string) (DeletePublisher, *shard, []string) {
	dp, ok := c.pub.(DeletePublisher)
	if !ok || c.l2 == nil || len(tags) > 0 || len(keys) == 0 || !c.epochUsable() {
		return nil, nil, nil
	}
	pfx := c.epoch.Load().pfx
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = pfx + k
	}
	shard := c.shardOf(full[0])
	for _, f := range full[1:] {
		if c.shardOf(f) != shard {
			return nil, nil, nil
		}
	}
	if !dp.CanDeleteAndPublish(c.l2, full) {
		return nil, nil, nil
	}
	return dp, c.brs.of(shard), full
}

// deleteAndPublish is invalidate for keys that fusable accepted: the L2
// DEL and the message in one exchange (see [DeletePublisher]), accounted
// to br as the DEL alone would be, its failures kept as invalidate keeps
// them.
func (c *Cache[V]) deleteAndPublish(ctx context.Context, dp DeletePublisher, br *shard, keys, full []string, useBreaker bool) ([]outEntry, error) {
	if useBreaker && !br.Allow() {
		_, err := br.refused()
		return c.announce(ctx, keys, nil, c.leftL2(keys, nil), err)
	}
	key := ""
	if len(keys) == 1 {
		key = keys[0]
	}
	var perr error
	err := c.l2OpOn(ctx, br, OpL2Delete, key, func(ctx context.Context) (err error) {
		err, perr = dp.DeleteAndPublish(ctx, c.l2, full, keys)
		return err
	})
	var left []outEntry
	if err != nil {
		left = c.leftL2(keys, nil)
	}
	if perr == nil {
		c.ctr.invSent.Add(uint64(len(keys)))
	}
	return c.published(keys, nil, left, err, perr)
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

// queue keeps what is left of a failed invalidation for replay and
// returns the error the caller gets (matching ErrL2). What cannot be kept
// (the outbox is full) is not lost: the namespace then owes a move to its
// next epoch, which makes every key of this epoch unreachable, and makes it
// as soon as L2 answers; the other instances are told to drop their L1 as
// soon as the invalidator can carry it.
func (c *Cache[V]) queue(op string, left []outEntry, err error) error {
	switch c.out.add(left) {
	case addKept:
		return fmt.Errorf("tier: %s: %w: %w (kept for replay)", op, ErrL2, err)
	case addCovered:
		// The move tells the other instances once it is made.
		return fmt.Errorf("tier: %s: %w: %w (covered by the namespace's owed epoch move)", op, ErrL2, err)
	}
	for _, e := range left {
		if e.ops&opPub != 0 {
			// A message did not go out and cannot be kept: the other
			// instances drop all of L1 as soon as the invalidator works.
			c.out.pubClear.Store(true)
			c.out.wake()
			break
		}
	}
	c.ctr.invOverflows.Add(uint64(len(left)))
	switch {
	case c.l2 == nil:
		return fmt.Errorf("tier: %s: %w: %w (replay queue full: the other instances will drop their L1)", op, ErrL2, err)
	case c.epocher == nil:
		c.obs.Event(context.Background(), Event{Cache: c.o.Name, Kind: EventEpochOwed, Tier: TierL2, Reason: ReasonInvalidationOverflow, Err: errNoEpoch})
		return fmt.Errorf("tier: %s: %w: %w (replay queue full, and L2 cannot move epochs: the L2 step is lost)", op, ErrL2, err)
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
		now := time.Now()
		readEpoch := c.epocher != nil && (!c.epochKnown.Load() || c.epochStale.Load() || now.Sub(lastEpoch) >= epochRefresh)
		if c.lineage != nil && (readEpoch || c.brs.held.Load() > 0 || now.Sub(c.checked) >= c.o.LineageInterval) {
			// Before adopting an epoch another instance moved to (after a
			// failover, say), see whether L2 changed: the move covers
			// this instance's view too, and it must not move again past it.
			c.checkLineage(c.stop)
		}
		switch {
		case c.epocher == nil:
		case c.out.owing.Load():
			c.moveEpoch(c.stop)
		case readEpoch:
			lastEpoch = now
			c.readEpoch(c.stop)
		}
		c.replayPending(c.stop)
	}
}

// replayPending retries every queued step once: the L2 steps per shard
// (concurrently: a dead shard does not hold back the others), then one
// message for what must be told now. An entry leaves the outbox only when
// all its steps succeeded.
func (c *Cache[V]) replayPending(ctx context.Context) {
	if c.pub != nil && c.out.pubClear.CompareAndSwap(true, false) {
		if c.publish(ctx, nil, []string{epochTag}) != nil {
			c.out.pubClear.Store(true)
		}
	}
	entries := c.out.snapshot()
	if len(entries) == 0 {
		return
	}
	if c.l2 != nil && c.epochUsable() {
		var keys, tags []string
		for _, e := range entries {
			switch {
			case e.ops&opL2 == 0:
			case e.tag:
				tags = append(tags, e.name)
			default:
				keys = append(keys, e.name)
			}
		}
		if len(keys)+len(tags) > 0 {
			fk, ft, _ := c.invalidateL2(ctx, keys, tags, false)
			failed := make(map[outEntry]bool, len(fk)+len(ft))
			for _, k := range fk {
				failed[outEntry{name: k}] = true
			}
			for _, t := range ft {
				failed[outEntry{name: t, tag: true}] = true
			}
			for i := range entries {
				e := &entries[i]
				if e.ops&opL2 == 0 || failed[outEntry{name: e.name, tag: e.tag}] {
					continue
				}
				e.ops &^= opL2
				if e.ops&opRepub != 0 {
					e.ops = e.ops&^opRepub | opPub
				}
			}
		}
	}
	if c.pub != nil {
		var keys, tags []string
		for _, e := range entries {
			switch {
			case e.ops&opPub == 0:
			case e.tag:
				tags = append(tags, e.name)
			default:
				keys = append(keys, e.name)
			}
		}
		if len(keys)+len(tags) > 0 && c.publish(ctx, keys, tags) == nil {
			for i := range entries {
				entries[i].ops &^= opPub
			}
		}
	}
	c.out.settle(entries, &c.ctr.replayed)
}
