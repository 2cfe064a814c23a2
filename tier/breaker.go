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

// breakers are a cache's L2 circuit breakers: one per shard of L2, as its
// [Sharder] names them, so that a dead shard never stops the calls to the
// healthy ones; a single one when L2 is not sharded.
type breakers struct {
	// newBreaker returns the breaker of a shard; immutable after New.
	newBreaker func(shard string) *breaker.Breaker
	one        *breaker.Breaker // shard "": immutable after New
	m          sync.Map         // shard name -> *breaker.Breaker
	n          atomic.Int32     // entries in m (approximately)
}

// of returns the breaker of shard.
func (bs *breakers) of(shard string) *breaker.Breaker {
	if shard == "" {
		return bs.one
	}
	if b, ok := bs.m.Load(shard); ok {
		return b.(*breaker.Breaker)
	}
	if bs.n.Load() >= maxBreakers {
		bs.m.Range(func(k, v any) bool {
			if v.(*breaker.Breaker).State() == breaker.Closed && bs.m.CompareAndDelete(k, v) {
				bs.n.Add(-1)
			}
			return true
		})
	}
	b, loaded := bs.m.LoadOrStore(shard, bs.newBreaker(shard))
	if !loaded {
		bs.n.Add(1)
	}
	return b.(*breaker.Breaker)
}

// state is the state of the most open breaker: open if any shard's is,
// else half-open if any is, else closed.
func (bs *breakers) state() BreakerState {
	worst := BreakerState(bs.one.State())
	bs.m.Range(func(_, v any) bool {
		switch s := BreakerState(v.(*breaker.Breaker).State()); s {
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
func (c *Cache[V]) breakerOf(key string) *breaker.Breaker {
	if c.sharder == nil {
		return c.brs.one
	}
	return c.brs.of(c.sharder.Shard(c.Key(key)))
}

// breakerOfFull returns the breaker of the shard holding a full L2 key.
func (c *Cache[V]) breakerOfFull(full string) *breaker.Breaker {
	return c.brs.of(c.shardOf(full))
}
