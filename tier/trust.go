package tier

// trust.go: which values may be served (I5): the trust floor, the age
// limit while the invalidator cannot vouch for L1, and tag invalidation
// times. One bound, under one name in the code: the age limit (the
// invalidator's StaleBound, set through Sink.LimitAge, kept in maxAge).

import (
	"context"
	"sync"
	"time"
)

// trusted reports whether nothing this cache heard of (a drop of L1, a
// tag invalidation, an age limit while the invalidator is down) rules e out.
func (c *Cache[V]) trusted(e *Entry[V]) bool {
	return c.trustedAt(e.Created, e.Tags)
}

// trustedAt is trusted for a value whose read began at created and that
// depends on tags.
func (c *Cache[V]) trustedAt(created int64, tags []string) bool {
	if created < c.trustFloor.Load() {
		return false
	}
	if ma := c.maxAge.Load(); ma != 0 && c.now()-created > ma {
		return false
	}
	return len(tags) == 0 || c.tags.valid(tags, created)
}

// trustedCall is trustedAt for a call in the flight table: a call still
// loading is not subject to the age limit (its value is read now, not at
// its start; a slow load must not be restarted by every caller while the
// invalidator is down).
func (c *Cache[V]) trustedCall(started int64, tags []string, running bool) bool {
	if !running {
		return c.trustedAt(started, tags)
	}
	return started >= c.trustFloor.Load() && (len(tags) == 0 || c.tags.valid(tags, started))
}

// fresh reports whether e may be served now.
func (c *Cache[V]) fresh(e *Entry[V]) bool {
	return c.hitNow() < e.Fresh && c.trusted(e)
}

// staleOf returns e if it may stand in for a failed or slow load
// (Options.FailSafe), else nil.
func (c *Cache[V]) staleOf(e *Entry[V], now int64) *Entry[V] {
	if c.o.FailSafe == 0 || now >= e.Deadline || !c.trusted(e) {
		return nil
	}
	return e
}

// untrust makes every L1 entry whose read began before before (unix
// nanos) a miss, and fences the running loads that began before it: the
// cache's own drops (InvalidateAll, DropLocal, a cleared namespace) and the
// invalidator's, through [Sink.Untrust]. An invalidator's reason that means
// messages were lost makes the namespace's epoch be re-read soon.
func (c *Cache[V]) untrust(before int64, reason Reason) {
	if !c.raiseTrustFloor(before) {
		return
	}
	if reason.mayHaveMissedClear() {
		c.epochStale.Store(true)
	}
	c.obs.Event(context.Background(), Event{Cache: c.o.Name, Kind: EventL1Dropped, Tier: TierL1, Reason: reason})
}

// raiseTrustFloor makes every L1 entry and running load that began before
// before untrusted, and reports whether the floor moved.
func (c *Cache[V]) raiseTrustFloor(before int64) bool {
	for {
		cur := c.trustFloor.Load()
		if before <= cur {
			return false
		}
		if c.trustFloor.CompareAndSwap(cur, before) {
			break
		}
	}
	c.fl.fenceBefore(before)
	return true
}

// limitAge sets the age limit ([Sink.LimitAge]): while it is not zero,
// entries whose read began more than maxAge ago are misses, checked at each
// read (trustedAt), and the loads that began before now-maxAge are fenced.
func (c *Cache[V]) limitAge(maxAge time.Duration, reason Reason) {
	old := c.maxAge.Swap(int64(maxAge))
	if maxAge > 0 && old == 0 {
		c.fl.fenceBefore(c.now() - int64(maxAge))
		c.obs.Event(context.Background(), Event{Cache: c.o.Name, Kind: EventL1Dropped, Tier: TierL1, Reason: reason})
	}
}

// tagTimes remembers, per tag, the last time this instance learned it was
// invalidated (unix nanos, this instance's clock). Reads are lock-free
// (sync.Map); it forgets tags older than the longest life of an entry, so it
// does not grow without bound.
type tagTimes struct {
	m       sync.Map // string -> int64
	mu      sync.Mutex
	stores  int   // guarded by mu: stores since the last prune
	horizon int64 // entries older than this many nanos are gone anyway
	skew    int64 // clock skew allowed between instances, in nanos
}

// touch records at for tags (keeping the latest time per tag).
func (t *tagTimes) touch(tags []string, at int64) {
	for _, tag := range tags {
		for {
			old, loaded := t.m.LoadOrStore(tag, at)
			if !loaded || old.(int64) >= at || t.m.CompareAndSwap(tag, old, at) {
				break
			}
		}
	}
	t.mu.Lock()
	t.stores += len(tags)
	prune := t.stores >= 1024
	if prune {
		t.stores = 0
	}
	t.mu.Unlock()
	if prune {
		cutoff := at - t.horizon - t.skew
		t.m.Range(func(k, v any) bool {
			if v.(int64) < cutoff {
				t.m.CompareAndDelete(k, v)
			}
			return true
		})
	}
}

// valid reports whether a value of tags that this instance read at created
// (its own clock) is newer than every invalidation of those tags it knows.
func (t *tagTimes) valid(tags []string, created int64) bool {
	return t.validWithin(tags, created, 0)
}

// validWithin is valid for a value created on another instance's clock,
// allowing skew between the clocks.
func (t *tagTimes) validWithin(tags []string, created, skew int64) bool {
	for _, tag := range tags {
		if at, ok := t.m.Load(tag); ok && created <= at.(int64)+skew {
			return false
		}
	}
	return true
}
