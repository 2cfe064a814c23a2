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

// DeletePublisher is a [Publisher] that can also take over the L2 step of
// a [Cache.Delete]: it deletes the keys from L2 and publishes their
// invalidation in one exchange with L2's server, in that order on one
// connection, so no instance can hear the invalidation before the keys
// (and their leases, which live under the same keys) are gone. A cache
// checks for it by type assertion and, where it says no, deletes and
// publishes in two steps as with any Publisher.
type DeletePublisher interface {
	Publisher
	// CanDeleteAndPublish reports whether DeleteAndPublish can delete full
	// (full L2 keys, all on one shard of l2) from l2, the cache's Remote,
	// together with its publish. It must not modify anything, and may
	// wait only briefly (to learn where the keys live).
	CanDeleteAndPublish(l2 Remote, full []string) bool
	// DeleteAndPublish deletes full from l2 as l2.Delete(ctx, full...)
	// would, then publishes keys (the user's keys of full, in the same
	// order) as Publish(ctx, keys, nil) would. It is called only after
	// CanDeleteAndPublish said yes for l2 and full. l2Err is the deletion's
	// error (as l2.Delete would return it), pubErr the publish's (as
	// Publish would return it): the cache keeps what failed for replay as
	// it does for either step alone. The message may go out although the
	// deletion failed (the other instances drop their copies anyway), never
	// before the deletion was applied.
	DeleteAndPublish(ctx context.Context, l2 Remote, full, keys []string) (l2Err, pubErr error)
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
// unless Close is closing L1. With settle, it first waits for the L1
// writes queued before it (a fenced flight's write of the same key, which
// L1 would otherwise apply after this one, or apply and drop this one).
func (c *Cache[V]) setL1(key string, e *Entry[V], cost int64, ttl time.Duration, settle bool) {
	c.l1mu.RLock()
	defer c.l1mu.RUnlock()
	if c.l1closed {
		return
	}
	if settle {
		c.l1.Wait()
	}
	if c.l1.Set(key, e, cost, ttl) {
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
