package ratelimit

import (
	"sync"
	"time"
)

// locals is the in-process limiter of the Local outage mode: per (policy,
// actor), the times (monotonic nanoseconds) of the units this instance
// admitted, newest last, in a ring as long as the policy's largest local
// quota. A window of local quota L admits a call of cost n when fewer than
// L-n+1 of its recorded units fall inside it: an exact sliding log, on the
// local clock.
//
// It is warm: every unit Redis admits through this instance is recorded
// too, so an outage does not hand out a fresh share to an actor that just
// used it. It is bounded: a full shard drops the logs whose newest unit is
// older than their longest window (they carry no information), and past
// that records nothing more (counted) and denies actors it does not know
// (ReasonLocalFull). It is safe for concurrent use.
type locals struct {
	perShard int
	maxPer   []int64 // by policy index: its longest window, in nanoseconds
	shards   [shards]localShard
}

type localShard struct {
	mu sync.Mutex
	m  map[actorKey]*ring // guarded by mu
	_  [48]byte
}

// maxRing is the largest local quota kept as an exact log; a policy with a
// larger one is kept as two fixed-window counts per window, and a call is
// admitted only if the current and the previous fixed window together
// have room: never more than the quota in any rolling window (which spans
// at most those two), at the price of admitting less near a window's start.
const maxRing = 1024

// ring holds the newest len(t) unit times of one (policy, actor), or, for
// a policy whose largest local quota is over maxRing, its counts.
type ring struct {
	counts []bucketCount // per limit; nil for a log
	t      []int64
	next   int // where the next unit goes
	size   int // how many are recorded, at most len(t)
}

// bucketCount is the count of the current fixed window (index idx) of one
// limit and of the one before it.
type bucketCount struct {
	idx       int64
	cur, prev int
}

// roll brings c to the fixed window of now.
func (c *bucketCount) roll(now, per int64) {
	idx := now / per
	switch {
	case idx == c.idx:
	case idx == c.idx+1:
		c.prev, c.cur = c.cur, 0
	default:
		c.prev, c.cur = 0, 0
	}
	c.idx = idx
}

// at returns the k-th newest recorded time (k >= 1), and false if fewer
// than k are recorded.
func (r *ring) at(k int) (int64, bool) {
	if k > r.size {
		return 0, false
	}
	return r.t[(r.next-k+len(r.t))%len(r.t)], true
}

func (r *ring) record(now int64, n int, p *policy) {
	if r.counts != nil {
		for i, lim := range p.Limits {
			c := &r.counts[i]
			c.roll(now, int64(lim.Per))
			c.cur += n
		}
		r.size = 1
		r.t[0] = now
		return
	}
	for range min(n, len(r.t)) {
		r.t[r.next] = now
		r.next = (r.next + 1) % len(r.t)
		r.size = min(r.size+1, len(r.t))
	}
}

func newLocals(size int, policies []*policy) *locals {
	l := &locals{perShard: max(1, size/shards), maxPer: make([]int64, len(policies))}
	for _, p := range policies {
		l.maxPer[p.index] = int64(p.maxPer)
	}
	for i := range l.shards {
		l.shards[i].m = make(map[actorKey]*ring)
	}
	return l
}

// newRing returns the state of one (policy, actor) whose largest local
// quota is c, for a policy of limits windows.
func newRing(c, limits int) *ring {
	if c > maxRing {
		return &ring{t: make([]int64, 1), counts: make([]bucketCount, limits)}
	}
	return &ring{t: make([]int64, c)}
}

// capacity is the ring length policy p needs: its largest local quota.
func capacity(p *policy) int {
	c := 0
	for _, q := range p.local {
		c = max(c, q)
	}
	return c
}

// sweepLocked drops the logs whose newest unit is older than their
// policy's longest window: they no longer say anything. s.mu must be held.
func (l *locals) sweepLocked(s *localShard, now int64) {
	for k, r := range s.m {
		if newest, ok := r.at(1); !ok || now-newest >= l.maxPer[k.policy] {
			delete(s.m, k)
		}
	}
}

// localResult is the local limiter's answer for one policy.
type localResult struct {
	ok      bool
	full    bool     // no room to track this actor: denied
	windows []Window // per limit of the policy
}

// check decides a call of cost n by policy p for actor under the local
// quotas, without recording it: the caller checks every policy of a call
// first and then records them all (record), so that the call is all or
// nothing here too.
func (l *locals) check(p *policy, actor string, n int, now int64) localResult {
	s := &l.shards[shardOf(actor)]
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[actorKey{p.index, actor}]
	res := localResult{ok: true, windows: make([]Window, len(p.Limits))}
	if r == nil && len(s.m) >= l.perShard {
		l.sweepLocked(s, now)
		res.full = len(s.m) >= l.perShard
	}
	for i, lim := range p.Limits {
		per := int64(lim.Per)
		quota := p.local[i]
		w := Window{Policy: p.Name, Name: p.names[i], Limit: quota, Per: lim.Per}
		used, oldest := 0, now
		if r != nil && r.counts != nil {
			c := r.counts[i]
			c.roll(now, per)
			used = c.cur + c.prev
			// Room grows when the previous fixed window stops counting:
			// at the end of the current one.
			oldest = c.idx * per
		} else if r != nil {
			for j := 1; j <= r.size; j++ {
				t, _ := r.at(j)
				if now-t >= per {
					break
				}
				used++
				oldest = t
			}
		}
		w.Reset = time.Duration(oldest + per - now)
		switch {
		case res.full || n > quota:
			// Untracked, or a cost this instance's share can never admit:
			// no wait is known to help; a window is a fair guess.
			res.ok = false
			w.Remaining = max(0, quota-used)
			w.RetryAfter = lim.Per
		case used+n <= quota:
			w.Remaining = quota - used - n
		case r.counts != nil:
			res.ok = false
			w.Remaining = quota - used
			c := r.counts[i]
			c.roll(now, per)
			w.RetryAfter = time.Duration((c.idx+1)*per - now)
			if c.cur+n > quota {
				w.RetryAfter += time.Duration(per)
			}
		default:
			res.ok = false
			w.Remaining = quota - used
			// The unit whose leaving makes room: the (quota-n+1)-th newest.
			t, _ := r.at(quota - n + 1)
			w.RetryAfter = time.Duration(t + per - now)
		}
		res.windows[i] = w
	}
	return res
}

// record records n units of policy p for actor at now. It does nothing
// when the table is full (the caller counts it).
func (l *locals) record(p *policy, actor string, n int, now int64) bool {
	k := actorKey{p.index, actor}
	s := &l.shards[shardOf(actor)]
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[k]
	if r == nil {
		c := capacity(p)
		if c == 0 {
			return true // a zero share: nothing to remember
		}
		if len(s.m) >= l.perShard {
			l.sweepLocked(s, now)
			if len(s.m) >= l.perShard {
				return false
			}
		}
		r = newRing(c, len(p.Limits))
		s.m[k] = r
	}
	r.record(now, n, p)
	return true
}

// forget drops actor's logs (Limiter.Reset).
func (l *locals) forget(actor string, policies []*policy) {
	s := &l.shards[shardOf(actor)]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range policies {
		delete(s.m, actorKey{p.index, actor})
	}
}
