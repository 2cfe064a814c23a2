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
	timer  *time.Timer  // sends the queue (flushTimer) when no round trip took it in time
	armed  bool         // timer is set to fire
	closed bool         // Close sent the queue: writes are sent by their flights
	// drain, set with closed, is the context of every write sent while
	// the cache closes: one L2Timeout from Close's start, so that Close
	// waits at most that long for the writes, however many (Redis paused).
	drain       context.Context
	drainCancel context.CancelFunc
	delay       time.Duration
	// onQueue, if set (by tests, before the cache is used), is called
	// under mu after each write is queued.
	onQueue func()
}

// queueWrite hands f, whose write to L2 is f.write, to the queue, and
// reports whether it took it; it does not once the cache is closing (the
// flight then writes on its own).
func (c *Cache[V]) queueWrite(f *flight[V]) bool { return c.push(f, true) }

// requeue puts back a flight whose carried write failed, to be sent on its
// own by the timer (takeQueued leaves it to flushQueued), unless the cache
// is closing.
func (c *Cache[V]) requeue(f *flight[V]) bool { return c.push(f, false) }

// push appends f to the queue and arms the timer, unless the cache is
// closing; a new write (fresh) is reported to the test hook.
func (c *Cache[V]) push(f *flight[V], fresh bool) bool {
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
	if fresh && q.onQueue != nil {
		q.onQueue()
	}
	return true
}

// takeQueued removes from the queue and returns the flights whose writes
// go to the shard br (when br is nil: the shard of the oldest), oldest
// first, as many as one round trip carries. A lease's round trip (br not
// nil) does not take a write that already failed in one.
func (c *Cache[V]) takeQueued(br *shard) []*flight[V] {
	q := &c.wq
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return nil
	}
	carry := br != nil // a lease's round trip: not the writes that failed in one
	// Where each key lives now (a slot may have moved). Shard must not
	// block (Sharder); goredis's waits only before its client first knows
	// the slot map, and a queued write's lease went through that client.
	for _, f := range q.q {
		f.wshard = c.writeShard(f)
	}
	if br == nil {
		br = q.q[0].wshard
	}
	var taken []*flight[V]
	bytes := 0
	kept := q.q[:0]
	for _, f := range q.q {
		if f.wshard == br && !(carry && f.retried) && len(taken) < maxCarryWrites && (bytes < maxCarryBytes || len(taken) == 0) {
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

// shardUnknown reports whether br stands for keys whose shard the Sharder
// could not name (a Cluster whose slot map is not known): a pipeline of
// such keys could span nodes and wait for a dead one, so it carries no
// writes. On an L2 of one server, every key is on br == brs.one, and no
// other shard is ever named.
func (c *Cache[V]) shardUnknown(br *shard) bool {
	return c.sharder != nil && br == c.brs.one && c.brs.n.Load() > 0
}

// writeShard is the breaker of the shard that holds f's write's key now.
func (c *Cache[V]) writeShard(f *flight[V]) *shard {
	if c.sharder == nil {
		return f.wshard // the only one
	}
	return c.breakerOfFull(f.write.Key)
}

// writesOf returns the writes of fs, for a WriteCarrier to send.
func writesOf[V any](fs []*flight[V]) []LeasedWrite {
	ws := make([]LeasedWrite, len(fs))
	for i, f := range fs {
		ws[i] = f.write
	}
	return ws
}

// flushQueued sends every queued write, one SetLeasedMany per batch, the
// shards concurrently (a dead shard does not hold up the others' writes),
// all of them within ctx: the timer's callback (one L2Timeout for the
// whole queue), and Close's (the drain context). The writes to a shard
// whose breaker refuses calls fail at once.
func (c *Cache[V]) flushQueued(ctx context.Context) {
	byShard := map[*shard][][]*flight[V]{}
	for fs := c.takeQueued(nil); len(fs) > 0; fs = c.takeQueued(nil) {
		byShard[fs[0].wshard] = append(byShard[fs[0].wshard], fs)
	}
	var wg sync.WaitGroup
	for br, batches := range byShard {
		send := func() {
			for _, fs := range batches {
				c.sendQueued(ctx, br, fs)
			}
		}
		if len(byShard) == 1 {
			send()
			break
		}
		wg.Go(send)
	}
	wg.Wait()
}

// flushTimer is the timer's callback: the queue's writes, within one
// L2Timeout (or the drain context, once Close has begun).
func (c *Cache[V]) flushTimer() {
	if ctx := c.drainContext(); ctx != nil {
		c.flushQueued(ctx)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.o.L2Timeout)
	defer cancel()
	c.flushQueued(ctx)
}

// sendQueued sends the writes of fs, all to the shard br, in one round
// trip on their own within ctx, and ends each flight. Once ctx has ended,
// they fail without asking L2.
func (c *Cache[V]) sendQueued(ctx context.Context, br *shard, fs []*flight[V]) {
	ws := writesOf(fs)
	ended := 0
	defer func() {
		for _, f := range fs[ended:] { // the carrier panicked: no flight may be stranded (I1)
			f.sentAfterPanic(br)
		}
	}()
	var d time.Duration
	late := ctx.Err() != nil      // the flush's time is over
	unsent := late || !br.Allow() // L2 is not asked
	if unsent {
		var err error
		if late {
			err = notSent(ctx)
		} else {
			_, err = br.refused()
		}
		for i := range ws {
			ws[i].Err = err
		}
	} else {
		t0 := c.opStart()
		c.carrier.SetLeasedMany(ctx, ws)
		d = opDuration(t0)
	}
	for i, f := range fs {
		ended = i + 1 // sent leaves even if the observer panics
		f.sent(ws[i], br, d, unsent)
	}
}

// leaseCarrying sends the leases reqs, of keys on br's shard, in one
// round trip that carries the writes queued for that shard, sets each
// lease's outcome and then answered. A carried write that failed with the
// round trip is queued again, to be sent on its own (its fate must not
// hang on another miss's context), or, once the cache is closing, sent
// now with the others that failed, within Close's drain context; the
// others end their flights. Nothing is carried once ctx has ended or the
// cache is closing.
func (c *Cache[V]) leaseCarrying(ctx context.Context, br *shard, reqs []LeaseRequest, answered *bool) {
	var fs []*flight[V]
	if ctx.Err() == nil && !c.isClosed() {
		fs = c.takeQueued(br)
	}
	ws := writesOf(fs)
	ended := 0
	var alone []*flight[V] // failed while closing: to be sent now
	defer func() {
		for _, f := range fs[ended:] { // the carrier panicked: no flight may be stranded (I1)
			f.sentAfterPanic(br)
		}
		for _, f := range alone { // the observer panicked before they were sent
			f.sentAfterPanic(br)
		}
	}()
	t0 := c.opStart()
	c.carrier.LeaseMany(ctx, reqs, ws)
	*answered = true // whatever ending the carried flights does
	d := opDuration(t0)
	for i, f := range fs {
		// f counts as ended before it is handed on: sent leaves even if the
		// observer panics, requeue gives it to the queue, alone is ended
		// by the deferred clean-up until sendQueued, which ends its
		// flights even if the carrier panics, takes it.
		ended = i + 1
		if isL2Failure(ws[i].Err) && !f.retried {
			f.retried = true
			if !c.requeue(f) {
				alone = append(alone, f)
			}
			continue
		}
		f.sent(ws[i], br, d, false)
	}
	if len(alone) > 0 {
		send := alone
		alone = nil
		c.sendQueued(c.drainContext(), br, send)
	}
}

// drainContext is the context of the writes sent while the cache closes
// (see writeQueue.drain), nil before; it is set once requeue has refused a
// flight.
func (c *Cache[V]) drainContext() context.Context {
	c.wq.mu.Lock()
	defer c.wq.mu.Unlock()
	return c.wq.drain
}

// sentAfterPanic ends f, a flight whose write's round trip panicked, as
// sent does. It runs while that panic goes up, so a second panic (of the
// observer) is dropped here: the first one is the one the caller gets.
func (f *flight[V]) sentAfterPanic(br *shard) {
	defer func() { _ = recover() }()
	f.sent(LeasedWrite{Err: errCarrierPanicked}, br, 0, false)
}

// sent ends a queued flight once its write went out to the shard br (w,
// its outcome; d, the round trip's time), or was not sent (unsent: br's
// breaker refused it, or its flush's time was over): it accounts the write
// to br's breaker and reports it to the observer as an L2 set (an unsent
// one is neither: L2 was not asked); it takes the value back if the lease
// was lost (keeps I4, as writeL2 does), and leaves the table (keeps I1).
//
// NOTE: the observer hears of a carried or queued write when its outcome
// is known, not when it starts: Begin and End come together, on the
// goroutine that sent it, with the round trip's time as Result.Duration.
func (f *flight[V]) sent(w LeasedWrite, br *shard, d time.Duration, unsent bool) {
	defer f.leave(nil) // even if the observer panics (I1)
	c := f.c
	failed := isL2Failure(w.Err)
	if !unsent {
		switch {
		case !failed:
			br.Success()
		case !c.isClosed(): // closing: not Redis's fault
			c.ctr.l2Errors.Add(1)
			br.Failure()
		}
	}
	if w.Err == nil && !w.Written {
		f.leaseLost()
	}
	if !unsent && !c.noObs {
		desc := c.describe(OpL2Set, f.key)
		ctx := c.obs.Begin(f.ctx, desc)
		res := Result{Duration: d}
		if failed {
			res.Err = w.Err
		}
		c.obs.End(ctx, desc, res)
	}
}

// closeQueue sends the queued writes now, within the drain context, and
// makes the flights that finish later write on their own (Close).
func (c *Cache[V]) closeQueue() {
	q := &c.wq
	q.mu.Lock()
	q.closed = true
	q.drain, q.drainCancel = context.WithTimeout(context.Background(), c.o.L2Timeout)
	ctx := q.drain
	q.mu.Unlock()
	c.flushQueued(ctx)
}
