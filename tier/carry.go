package tier

// carry.go: a flight's leased L2 write, queued once its callers are
// answered and sent with the next round trip to its shard.

import (
	"context"
	"sync"
	"time"
)

// carryDelay is how long a queued leased write waits for a miss's lease
// round trip to carry it before it is sent on its own: short beside the
// first re-read of an instance that waits for the lease (leaseBackoffMin).
const carryDelay = 300 * time.Microsecond

// A round trip carries at most maxCarryWrites queued writes, and stops
// adding writes once their values reach maxCarryBytes (it always takes one):
// a burst of misses on large values must not make one miss's lease wait
// behind megabytes of other flights' writes.
const (
	maxCarryWrites = 64
	maxCarryBytes  = 256 << 10
)

// writeQueue holds the leased writes of flights that have answered their
// callers, until a round trip to their shard carries them (a [WriteCarrier]
// L2 only). A queued flight is owned by the queue (keeps I1): whoever takes
// it from the queue ends it, through sent.
//
// Why: with the write sent on its own, a steady stream of misses costs two
// round trips each, and on a small machine the write's syscalls and Redis
// time slow the next miss even though no caller waits for it
// (benchmarks/results/2026-12-06/missload-where-the-time-goes.md).
type writeQueue[V any] struct {
	mu     sync.Mutex
	q      []*flight[V] // in the order they were queued
	timer  *time.Timer  // sends the queue (flushQueued) when no round trip took it in time
	armed  bool         // timer is set to fire
	closed bool         // Close sent the queue: writes are sent by their flights
	delay  time.Duration
	// onQueue, if set (by tests, before the cache is used), is called
	// under mu after each write is queued.
	onQueue func()
}

// queueWrite hands f, whose write to L2 is f.write, to the queue, and reports
// whether it took it; it does not once the cache is closing (the flight
// then writes on its own).
func (c *Cache[V]) queueWrite(f *flight[V]) bool {
	q := &c.wq
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.q = append(q.q, f)
	if !q.armed {
		q.armed = true
		q.timer.Reset(q.delay)
	}
	if q.onQueue != nil {
		q.onQueue()
	}
	return true
}

// takeQueued removes from the queue and returns the flights whose writes
// go to the shard br (when br is nil: the shard of the oldest), oldest
// first, as many as one round trip carries.
func (c *Cache[V]) takeQueued(br *shard) []*flight[V] {
	q := &c.wq
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return nil
	}
	if br == nil {
		br = q.q[0].wshard
	}
	var taken []*flight[V]
	bytes := 0
	kept := q.q[:0]
	for _, f := range q.q {
		if f.wshard == br && len(taken) < maxCarryWrites && (bytes < maxCarryBytes || len(taken) == 0) {
			taken = append(taken, f)
			bytes += len(f.write.Value)
		} else {
			kept = append(kept, f)
		}
	}
	clear(q.q[len(kept):])
	q.q = kept
	if len(q.q) == 0 && q.armed {
		q.armed = false
		q.timer.Stop()
	}
	return taken
}

// writesOf returns the writes of fs, for a WriteCarrier to send.
func writesOf[V any](fs []*flight[V]) []LeasedWrite {
	ws := make([]LeasedWrite, len(fs))
	for i, f := range fs {
		ws[i] = f.write
	}
	return ws
}

// flushQueued sends every queued write, one SetLeasedMany per shard and
// batch, each within L2Timeout: the timer's callback, and Close's.
func (c *Cache[V]) flushQueued() {
	for {
		fs := c.takeQueued(nil)
		if len(fs) == 0 {
			return
		}
		c.sendQueued(fs)
	}
}

// sendQueued sends the writes of fs, all to one shard, in one round trip,
// and ends each flight.
func (c *Cache[V]) sendQueued(fs []*flight[V]) {
	br := fs[0].wshard
	ws := writesOf(fs)
	ctx, cancel := context.WithTimeout(context.Background(), c.o.L2Timeout)
	t0 := c.opStart()
	c.carrier.SetLeasedMany(ctx, ws)
	cancel()
	d := opDuration(t0)
	failed := false
	for i, f := range fs {
		failed = failed || isL2Failure(ws[i].Err)
		f.sent(ws[i], d)
	}
	switch {
	case !failed:
		br.Success()
	case !c.isClosed():
		br.Failure()
	}
}

// sent ends a queued flight once its write went out (w, its outcome; d,
// the round trip's time): it reports the write as an L2 set, takes the
// value back if the lease was lost (keeps I4, as writeL2 does), and leaves
// the table (keeps I1).
func (f *flight[V]) sent(w LeasedWrite, d time.Duration) {
	c := f.c
	if !c.noObs {
		desc := c.describe(OpL2Set, f.key)
		ctx := c.obs.Begin(f.ctx, desc)
		res := Result{Duration: d}
		if isL2Failure(w.Err) {
			res.Err = w.Err
		}
		c.obs.End(ctx, desc, res)
	}
	switch {
	case isL2Failure(w.Err):
		if !c.isClosed() {
			c.ctr.l2Errors.Add(1)
		}
	case w.Err == nil && !w.Written:
		f.leaseLost()
	}
	f.leave(nil)
}

// closeQueue sends the queued writes now and makes the flights that
// finish later write on their own (Close).
func (c *Cache[V]) closeQueue() {
	c.wq.mu.Lock()
	c.wq.closed = true
	c.wq.mu.Unlock()
	c.flushQueued()
}
