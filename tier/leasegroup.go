package tier

// leasegroup.go: the concurrent misses of one shard share lease round
// trips.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// A shard has at most maxLeaseTrips lease round trips on their way at a
// time; the misses that come meanwhile queue, and the next round trip sends
// up to maxLeaseBatch of them. Sharing costs each queued miss a wait and a
// hand-off, and saves it a round trip's syscalls: it pays only when the
// batches are large, so only a shard with many misses at once queues. With
// 16, BenchmarkZipf's 8 goroutines at -cpu=2 never queue and read 1.0-1.6x
// (median 1.3x, 4 rounds) as fast as with four trips, which queued them in
// small batches and cost more CPU per read than no sharing at all; the
// load generator's 16 read as fast as with four (benchmarks/RESULTS.md,
// "Sixteen lease round trips").
const (
	maxLeaseTrips = 16
	maxLeaseBatch = 64
)

// leaseGroup lets the concurrent misses of one L2 shard share round trips
// (a [WriteCarrier] L2 only). While fewer than trips lease round trips are
// on their way to the shard, a miss sends its lease at once. Otherwise it
// queues; when a round trip is back, its sender hands the oldest of the
// queue, as one batch, to the newest call in that batch, which sends them
// all in one round trip (with the writes queued for the shard) and answers
// the others. The newest sends because its deadline is the batch's latest:
// the round trip may run to it without keeping its own caller past its
// L2Timeout, and an older call whose deadline comes first leaves on its
// own (its outcome unknown, like that of any call cut by its deadline). On
// a small machine a round trip's syscalls and wake-ups, on both sides, are
// most of what a miss costs: a busy shard then pays them once per batch.
// The round trip runs on its sender's context, so the L2 client's hooks
// (a tracing hook, say) see that caller's values for the whole batch.
//
// Invariant (the group's): trips counts the senders, each one either the
// miss that took a free trip or the call that a sender handed the next
// batch to; a sender passes its trip on (pass) once its round trip is
// back, or at once when its deadline ended before it could send. Every
// call in a batch that is sent is answered exactly once, by its sender
// (done closed), whatever the carrier does (a panic too). A call that
// returns while a batch holds it (left) leaves that answer unread, is never
// handed a batch to send, and is dropped from a batch handed on unsent.
type leaseGroup struct {
	mu    sync.Mutex
	trips int          // senders: lease round trips on their way
	queue []*leaseCall // waiting for a round trip, oldest first
}

// leaseCall is one miss's lease in a leaseGroup.
type leaseCall struct {
	req LeaseRequest
	ctx context.Context
	// one is the batch of a call that took a free trip: sent alone, it
	// needs no other slice.
	one [1]*leaseCall
	// done is closed once req has its outcome, or once batch was set
	// (under the group's lock): this call is to send batch (it is the last
	// of batch). A call that left may never see it closed.
	done  chan struct{}
	batch []*leaseCall
	// left is set, under the group's lock, when the call returned while a
	// batch held it and it was not that batch's sender: pass never makes it
	// a sender (no one would send, and the trip would be lost), and drops
	// it from the batches it hands on.
	left bool
}

// leaseShared takes the lease of full (on br's shard) or returns what it
// holds, as Leaser.Lease does, sharing the round trip with the shard's
// other misses (see leaseGroup). A call whose deadline ends before a round
// trip took it returns an error matching errNotSent: Redis never saw it.
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
// batch lc is to send (lc last), or nil once another sender answered lc.
// When lc's context ends first: a call still queued leaves the queue
// (errNotSent); one on its way returns the context's error; one handed a
// batch hands the rest of it on (errNotSent). queued, if set (tests), is
// called under g's lock when lc is queued.
func (g *leaseGroup) join(lc *leaseCall, trips int, queued func()) ([]*leaseCall, error) {
	g.mu.Lock()
	if g.trips < trips {
		g.trips++
		g.mu.Unlock()
		lc.one[0] = lc
		return lc.one[:], nil
	}
	lc.done = make(chan struct{})
	g.queue = append(g.queue, lc)
	if queued != nil {
		queued()
	}
	g.mu.Unlock()
	var batch []*leaseCall
	select {
	case <-lc.done:
		batch = lc.batch
	case <-lc.ctx.Done():
		g.mu.Lock()
		if i := slices.Index(g.queue, lc); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
			g.mu.Unlock()
			return nil, notSent(lc.ctx)
		}
		batch = lc.batch
		lc.left = batch == nil
		g.mu.Unlock()
		if batch == nil {
			select {
			case <-lc.done: // answered after all
				return nil, nil
			default: // on its way: its sender, if it sends, answers a call that left
				return nil, lc.ctx.Err()
			}
		}
	}
	return g.take(lc, batch)
}

// take is what lc does with a batch it was handed (nil: lc was answered):
// send it, or, when lc's context has ended, hand the rest of it on.
func (g *leaseGroup) take(lc *leaseCall, batch []*leaseCall) ([]*leaseCall, error) {
	if batch != nil && lc.ctx.Err() != nil {
		g.pass(batch[:len(batch)-1])
		return nil, notSent(lc.ctx)
	}
	return batch, nil
}

// pass passes a sender's trip on: to the newest call of batch still
// waiting, as the sender of those of batch still waiting; with none, to
// the newest of the queue's oldest maxLeaseBatch calls, as the sender of
// those; with the queue empty too, back to the group. (A queued call that
// leaves takes itself out of the queue; one that leaves while in a batch
// is marked left.)
func (g *leaseGroup) pass(batch []*leaseCall) {
	g.mu.Lock()
	if slices.ContainsFunc(batch, hasLeft) { // rare: a copy, as batch's array is its last sender's
		batch = slices.DeleteFunc(slices.Clone(batch), hasLeft)
	}
	if len(batch) == 0 {
		if len(g.queue) == 0 {
			g.trips--
			g.mu.Unlock()
			return
		}
		n := min(len(g.queue), maxLeaseBatch)
		batch = slices.Clone(g.queue[:n])
		clear(g.queue[:n])
		g.queue = g.queue[n:]
	}
	sender := batch[len(batch)-1]
	sender.batch = batch
	g.mu.Unlock()
	close(sender.done)
}

func hasLeft(lc *leaseCall) bool { return lc.left }

// notSent is the error of a call whose context ended before a round trip
// took it.
func notSent(ctx context.Context) error { return fmt.Errorf("%w: %w", errNotSent, ctx.Err()) }

// sendLeases sends the leases of batch in one round trip on the context of
// its sender (batch's last call, the caller's own), answers the others,
// and passes the trip on. Should the carrier panic before it answered,
// every call is answered with errCarrierPanicked and the trip passed on
// before the panic goes on up the caller.
func (c *Cache[V]) sendLeases(br *shard, batch []*leaseCall) {
	sender := batch[len(batch)-1]
	var reqs []LeaseRequest
	if len(batch) == 1 {
		reqs = unsafe.Slice(&sender.req, 1) // the carrier answers in place
	} else {
		reqs = make([]LeaseRequest, len(batch))
		for i, lc := range batch {
			reqs[i] = lc.req
		}
	}
	answered := false
	defer func() {
		for i, lc := range batch {
			if !answered {
				lc.req.Err = errCarrierPanicked
			} else if len(batch) > 1 {
				lc.req = reqs[i]
			}
			if lc != sender {
				close(lc.done)
			}
		}
		br.leases.pass(nil)
	}()
	c.leaseCarrying(sender.ctx, br, reqs, &answered)
}
