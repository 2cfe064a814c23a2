package tier

import (
	"sync"
	"sync/atomic"

	"github.com/tiercache/tiercache/internal/breaker"
)

// BreakerState is the state of an L2 circuit breaker.
type BreakerState int32

// The breaker states.
const (
	// BreakerClosed: L2 is used.
	BreakerClosed = BreakerState(breaker.Closed)
	// BreakerOpen: L2 is skipped until the cool-down ends.
	BreakerOpen = BreakerState(breaker.Open)
	// BreakerHalfOpen: one probe call is let through; its outcome closes or
	// reopens the breaker.
	BreakerHalfOpen = BreakerState(breaker.HalfOpen)
)

// String returns "closed", "open" or "half_open".
func (s BreakerState) String() string { return breaker.State(s).String() }

// maxBreakers bounds the breakers a cache keeps (one per L2 shard; shards
// come and go with failovers): past it, closed ones are forgotten.
const maxBreakers = 1024

// shard is one L2 shard's circuit breaker, and whether the shard may be
// used yet.
type shard struct {
	*breaker.Breaker
	// heldSince (unix nanos) is not 0 while the shard is held: it was first
	// seen after the cache's first lineage check (a replica promoted in
	// place of a dead master, say) and is not used until the next check has
	// run, so that a master that may have lost acknowledged writes is never
	// read before the cache knows it (see [Lineager]).
	heldSince atomic.Int64
	// leases lets the shard's concurrent misses share lease round trips.
	leases leaseGroup
}

// Allow reports whether a call to the shard may go ahead: it is not held,
// and its breaker allows it.
func (s *shard) Allow() bool { return s.heldSince.Load() == 0 && s.Breaker.Allow() }

// refused is why Allow said no: the shard is held, or its breaker is open.
func (s *shard) refused() (reason Reason, err error) {
	if s.heldSince.Load() != 0 {
		return ReasonShardHeld, errShardHeld
	}
	return ReasonBreakerOpen, errBreakerOpen
}

// breakers are a cache's L2 circuit breakers: one per shard of L2, as its
// [Sharder] names them, so that a dead shard never stops the calls to the
// healthy ones; a single one when L2 is not sharded.
type breakers struct {
	// newBreaker returns the breaker of a shard; immutable after New.
	newBreaker func(shard string) *breaker.Breaker
	// hold reports whether a shard seen for the first time now is held;
	// immutable after New (nil: never).
	hold func() bool
	now  func() int64
	one  *shard       // shard "": immutable after New, never held
	m    sync.Map     // shard name -> *shard
	n    atomic.Int32 // entries in m (approximately)
	held atomic.Int32 // held entries in m
}

// of returns the breaker of shard.
func (bs *breakers) of(name string) *shard {
	if name == "" {
		return bs.one
	}
	if s, ok := bs.m.Load(name); ok {
		return s.(*shard)
	}
	if bs.n.Load() >= maxBreakers {
		bs.m.Range(func(k, v any) bool {
			if s := v.(*shard); s.State() == breaker.Closed && s.heldSince.Load() == 0 && bs.m.CompareAndDelete(k, v) {
				bs.n.Add(-1)
			}
			return true
		})
	}
	s := &shard{Breaker: bs.newBreaker(name)}
	if bs.hold != nil && bs.hold() {
		s.heldSince.Store(bs.now())
	}
	v, loaded := bs.m.LoadOrStore(name, s)
	if !loaded {
		bs.n.Add(1)
		if s.heldSince.Load() != 0 {
			bs.held.Add(1)
		}
	}
	return v.(*shard)
}

// release stops holding the shards held since before cutoff (unix nanos).
func (bs *breakers) release(cutoff int64) {
	bs.m.Range(func(_, v any) bool {
		s := v.(*shard)
		if since := s.heldSince.Load(); since != 0 && since < cutoff && s.heldSince.CompareAndSwap(since, 0) {
			bs.held.Add(-1)
		}
		return true
	})
}

// state is the state of the most open breaker: open if any shard's is,
// else half-open if any is, else closed.
func (bs *breakers) state() BreakerState {
	worst := BreakerState(bs.one.State())
	bs.m.Range(func(_, v any) bool {
		switch s := BreakerState(v.(*shard).State()); s {
		case BreakerOpen:
			worst = s
			return false
		case BreakerHalfOpen:
			worst = s
		}
		return true
	})
	return worst
}

// shardOf returns the shard of a full L2 key ("" when L2 has one).
func (c *Cache[V]) shardOf(full string) string {
	if c.sharder == nil {
		return ""
	}
	return c.sharder.Shard(full)
}

// breakerOf returns the breaker of the shard holding the user's key.
func (c *Cache[V]) breakerOf(key string) *shard {
	if c.sharder == nil {
		return c.brs.one
	}
	return c.brs.of(c.sharder.Shard(c.Key(key)))
}

// breakerOfFull returns the breaker of the shard holding a full L2 key.
func (c *Cache[V]) breakerOfFull(full string) *shard {
	return c.brs.of(c.shardOf(full))
}
