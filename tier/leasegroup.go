package tier

// leasegroup.go: the concurrent misses of one shard share lease round
// trips.

import (
	"context"
	"slices"
	"sync"
	"time"
)

// A shard has at most maxLeaseTrips lease round trips on their way at a
// time; the misses that come meanwhile queue, and the next round trip sends
// up to maxLeaseBatch of them. With four, a cache whose misses come one or
// a few at a time never waits; the load generator's 16 goroutines read
// 1.3-1.4x as fast as with every miss on its own round trip (two: 1.1-1.5x;
// benchmarks/RESULTS.md, "Misses share a round trip").
const (
	maxLeaseTrips = 4
	maxLeaseBatch = 64
)

// leaseGroup lets the concurrent misses of one L2 shard share round trips
// (a [WriteCarrier] L2 only). While fewer than trips lease round trips are
// on their way to the shard, a miss sends its lease at once. Otherwise it
// queues; when a round trip is back, its sender hands the queue, as one
// batch, to the oldest call in it, which sends them all in one round trip
// (with the writes queued for the shard) and answers the others. On a
// small machine a round trip's syscalls and wake-ups, on both sides, are
// most of what a miss costs: a busy shard then pays them once per batch.
//
// Invariant (the group's): trips counts the senders, each one either the
// miss that took a free trip or the call a sender handed the next batch
// to; a sender that finds the queue empty gives its trip back. Every call
// in a batch is answered exactly once, by its sender (done closed),
// whatever the carrier does (a panic too).
type leaseGroup struct {
	mu    sync.Mutex
	trips int          // senders: lease round trips on their way
	queue []*leaseCall // waiting for a round trip, oldest first
}

// leaseCall is one miss's lease in a leaseGroup.
type leaseCall struct {
	req LeaseRequest
	ctx context.Context
	// done is closed once req has its outcome, or once batch is set: this
	// call is to send batch (batch[0] is the call itself).
	done  chan struct{}
	batch []*leaseCall
}

// leaseShared takes the lease of full (on br's shard) or returns what it
// holds, as Leaser.Lease does, sharing the round trip with the shard's
// other misses (see leaseGroup).
func (c *Cache[V]) leaseShared(ctx context.Context, br *shard, full, lease string, ttl time.Duration) ([]byte, error) {
	lc := &leaseCall{req: LeaseRequest{Key: full, Lease: lease, TTL: ttl}, ctx: ctx}
	batch, err := br.leases.join(lc, c.leaseTrips, c.onLeaseQueue)
	if err != nil {
		return nil, err
	}
	if batch != nil {
		c.sendLeases(br, batch)
	}
	return lc.req.Cur, lc.req.Err
}

// join enters lc into g, which has at most trips senders, and returns the
// batch lc is to send (lc first), or nil once another sender answered lc.
// A call whose context ends while it is queued leaves the queue and
// returns the context's error; one already in a batch waits for its sender
// (whose deadline, that of an older call, comes first). A sender whose
// context has ended hands its batch to the next call in it. queued, if
// set (tests), is called under g's lock when lc is queued.
func (g *leaseGroup) join(lc *leaseCall, trips int, queued func()) ([]*leaseCall, error) {
	g.mu.Lock()
	if g.trips < trips {
		g.trips++
		g.mu.Unlock()
		return []*leaseCall{lc}, nil
	}
	lc.done = make(chan struct{})
	g.queue = append(g.queue, lc)
	if queued != nil {
		queued()
	}
	g.mu.Unlock()
	select {
	case <-lc.done:
	case <-lc.ctx.Done():
		g.mu.Lock()
		if i := slices.Index(g.queue, lc); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
			g.mu.Unlock()
			return nil, lc.ctx.Err()
		}
		g.mu.Unlock()
		<-lc.done
	}
	if lc.batch != nil && len(lc.batch) > 1 {
		if err := lc.ctx.Err(); err != nil {
			handTo(lc.batch[1:]) // too late to send for the others
			return nil, err
		}
	}
	return lc.batch, nil
}

// handTo makes batch[0] the sender of batch.
func handTo(batch []*leaseCall) {
	batch[0].batch = batch
	close(batch[0].done)
}

// next hands the queue's oldest calls, as a batch, to the first of them,
// or gives back the caller's trip when none waits.
func (g *leaseGroup) next() {
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.trips--
		g.mu.Unlock()
		return
	}
	n := min(len(g.queue), maxLeaseBatch)
	batch := slices.Clone(g.queue[:n])
	clear(g.queue[:n])
	g.queue = g.queue[n:]
	g.mu.Unlock()
	handTo(batch)
}

// sendLeases sends the leases of batch (batch[0], the caller's own, first)
// in one round trip on batch[0]'s context, answers the others, and passes
// its trip on (next). Should the carrier panic, every call is answered
// with errCarrierPanicked and the trip passed on before the panic goes on
// up the caller.
func (c *Cache[V]) sendLeases(br *shard, batch []*leaseCall) {
	reqs := make([]LeaseRequest, len(batch))
	for i, lc := range batch {
		reqs[i] = lc.req
	}
	answered := false
	defer func() {
		for i, lc := range batch {
			if answered {
				lc.req = reqs[i]
			} else {
				lc.req.Err = errCarrierPanicked
			}
			if i > 0 {
				close(lc.done)
			}
		}
		br.leases.next()
	}()
	c.leaseCarrying(batch[0].ctx, br, reqs)
	answered = true
}
