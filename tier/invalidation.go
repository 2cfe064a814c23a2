package tier

import (
	"context"
	"slices"
	"time"
)

// Invalidator carries invalidations between the instances that share an L2
// (package invalidate implements it over Redis pub/sub). A cache registers
// with it once, in New.
type Invalidator interface {
	// Register attaches the cache whose L2 keys live under namespace. The
	// invalidator calls sink for what other instances invalidate, and for
	// what it can no longer vouch for (lost messages, a dead subscription).
	// The Publisher it returns sends this cache's invalidations.
	Register(namespace string, sink Sink) (Publisher, error)
}

// Publisher sends one cache's invalidations to the other instances.
type Publisher interface {
	// Publish tells the other instances to drop keys (the user's keys, not
	// the full L2 keys) and tags from their L1. L2 has already been updated
	// by the cache. A returned error means the message may not have gone
	// out; the cache keeps the invalidation and replays it.
	Publish(ctx context.Context, keys, tags []string) error
	// Unregister detaches the cache; it is called once, from Close.
	Unregister()
}

// Sink is how an [Invalidator] acts on a cache's L1. Its methods are safe
// for concurrent use, do not block, and do not touch L2.
type Sink interface {
	// DropKeys removes keys from L1 and fences their running loads.
	DropKeys(keys []string)
	// DropTags makes the entries tagged with any of tags whose read began
	// before the call misses. at is the sender's time of the invalidation
	// (unix nanos, the sender's clock), for information.
	DropTags(tags []string, at int64)
	// Untrust makes every L1 entry whose read began before (unix nanos) a
	// miss, and fences the running loads that began before it. reason is
	// reported to the observer ([EventL1Dropped]); every reason but the
	// cache's own (ReasonDropLocal, ReasonInvalidateAll,
	// ReasonNamespaceCleared, ReasonL2Failover) is taken to mean that
	// invalidations were lost, a clear of the namespace perhaps among them:
	// the cache then re-reads the namespace's epoch soon.
	Untrust(before int64, reason Reason)
	// LimitAge makes every L1 entry whose read began more than maxAge ago a
	// miss, checked at each read, until it is called again; 0 lifts the
	// limit. The invalidator sets it while it cannot vouch for L1 (the
	// subscription is down or silent), so the bound holds however late its
	// own goroutines run. reason is reported when a limit is set.
	LimitAge(maxAge time.Duration, reason Reason)
}

// sink is the cache's [Sink]: the cache under another name, so that the
// Sink methods do not appear on Cache.
type sink[V any] struct{ c *Cache[V] }

func (s sink[V]) DropKeys(keys []string) {
	s.c.dropLocal(keys, false) // no wait: a Sink must not block the bus
	s.c.ctr.invReceived.Add(uint64(len(keys)))
}

// dropLocal fences the loads of keys and deletes them from L1. With wait,
// it then waits until L1 has applied the deletes if one of the keys had a
// load whose L1 write may still be queued in ristretto (installs do not
// wait): applied after the delete's immediate removal, that write would
// show the old value again until the queued delete caught up. It does
// nothing once Close is closing L1 (ristretto panics on a write then).
func (c *Cache[V]) dropLocal(keys []string, wait bool) {
	c.l1mu.RLock()
	defer c.l1mu.RUnlock()
	if c.l1closed {
		return
	}
	queued := false
	for _, k := range keys {
		if c.fl.fence(k) {
			queued = true
		}
		c.l1.Delete(k)
	}
	if wait && queued {
		c.l1.Wait()
	}
}

// setL1 puts e in L1 outside a flight and waits until it is visible,
// unless Close is closing L1.
func (c *Cache[V]) setL1(key string, e *Entry[V], cost int64, ttl time.Duration) {
	c.l1mu.RLock()
	defer c.l1mu.RUnlock()
	if !c.l1closed && c.l1.Set(key, e, cost, ttl) {
		c.l1.Wait()
	}
}

// DropTags records the tags as invalidated at this instance's own time of
// hearing it (not the sender's at): every L1 entry read before that
// instant is dropped, one read after it saw the origin after the write, and
// no clock skew between instances enters the comparison.
func (s sink[V]) DropTags(tags []string, _ int64) {
	defer s.c.ctr.invReceived.Add(uint64(len(tags))) // counted once applied
	if i := slices.Index(tags, epochTag); i >= 0 {
		// Another instance cleared the namespace: L2 is not used until the
		// replayer has read the new epoch (within replayInterval), so no
		// key of the old epoch is read meanwhile.
		if s.c.epocher != nil {
			s.c.epochKnown.Store(false)
		}
		s.c.untrust(s.c.now()+1, ReasonNamespaceCleared)
		tags = slices.Delete(slices.Clone(tags), i, i+1)
	}
	s.c.tags.touch(tags, s.c.now())
}

// Untrust implements [Sink].
func (s sink[V]) Untrust(before int64, reason Reason) { s.c.untrust(before, reason) }

// LimitAge implements [Sink].
func (s sink[V]) LimitAge(maxAge time.Duration, reason Reason) { s.c.limitAge(maxAge, reason) }
