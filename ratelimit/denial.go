package ratelimit

import (
	"hash/maphash"
	"sync"
)

// shards is the number of shards of the in-process tables; a power of two.
const shards = 64

// actorKey names one policy's state for one actor in process memory. The
// actor is kept as given: these tables never leave the process.
type actorKey struct {
	policy int
	actor  string
}

var seed = maphash.MakeSeed()

func shardOf(actor string) int {
	return int(maphash.String(seed, actor) & (shards - 1))
}

// denial is a cached denial: no call of cost >= cost fits window of policy
// before until (monotonic nanoseconds of the Limiter's clock).
type denial struct {
	until  int64
	cost   int
	window int // index into the policy's Limits
}

// denials is the L1 denial cache: per (policy, actor), the time until which
// Redis said no call of a given cost can fit. A denial stays true until
// then whatever other instances do: only admissions change a quota's
// state, and they only take room. It is bounded: a full shard first drops
// expired entries, then stops caching (the next call asks Redis). It is
// safe for concurrent use.
type denials struct {
	perShard int
	shards   [shards]denialShard
}

type denialShard struct {
	mu sync.RWMutex
	m  map[actorKey]denial // guarded by mu
	_  [40]byte            // keeps shards on separate cache lines
}

func newDenials(size int) *denials {
	d := &denials{perShard: max(1, size/shards)}
	for i := range d.shards {
		d.shards[i].m = make(map[actorKey]denial)
	}
	return d
}

// get returns the denial of k still in force at now, if any, that covers a
// call of cost n.
func (d *denials) get(k actorKey, n int, now int64) (denial, bool) {
	s := &d.shards[shardOf(k.actor)]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || now >= e.until || n < e.cost {
		return denial{}, false
	}
	return e, true
}

// put caches a denial; it keeps the later one if k has one.
func (d *denials) put(k actorKey, e denial, now int64) {
	s := &d.shards[shardOf(k.actor)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok && old.until > e.until && old.cost <= e.cost {
		return
	}
	if _, ok := s.m[k]; !ok && len(s.m) >= d.perShard {
		for kk, v := range s.m {
			if v.until <= now {
				delete(s.m, kk)
			}
		}
		if len(s.m) >= d.perShard {
			return
		}
	}
	s.m[k] = e
}

// forget drops every cached denial of actor (Limiter.Reset).
func (d *denials) forget(actor string, policies []*policy) {
	s := &d.shards[shardOf(actor)]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range policies {
		delete(s.m, actorKey{p.index, actor})
	}
}
