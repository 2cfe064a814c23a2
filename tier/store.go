package tier

// store.go: what a flight keeps of a load: L1 first, then the answer, then
// L2 under the flight's lease. Single and batch reads share it.

import (
	"context"
	"time"
)

// store keeps a loaded value (negative: a "not found"; the caller has set
// the call's val or err) and answers the callers: it encodes it (a value
// too large is answered but not cached), puts it in L1, answers, then
// writes L2 off the callers' path.
//
// An invalidation that overtook the load fences it: locally (the flight
// was fenced: nothing is installed, keeps I3) or on any instance (the L2
// lease was removed: the L1 copy is taken back and nothing is written to
// L2, keeps I4). L1 comes before the answer so that a caller answered by
// the flight finds the value in L1 (or the flight in the table) on its
// next read.
func (f *flight[V]) store(ctx context.Context, v V, negative bool) {
	c := f.c
	ttl := c.o.TTL
	if negative {
		ttl = c.o.NegativeTTL
	}
	ttl = c.jitter(ttl)
	enc, err := c.encode(v, negative, f.start(), ttl)
	if err != nil {
		c.ctr.refused.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventValueRefused, Key: c.obsKey(f.key), Err: err})
		f.cl.expires = 0 // not cached, not shared with callers that come later either
		close(f.cl.done)
		f.releaseLease(ctx) // nothing to write: the other instances need not wait for it
		return
	}
	f.cl.expires = c.shareUntil(negative)
	e := c.newEntry(v, negative, f.cl.tags, f.start(), c.now(), min(ttl, c.jitter(c.o.L1TTL)))
	e.size = len(enc)
	f.toL1(e)
	close(f.cl.done)
	f.writeL2(ctx, enc, ttl+c.o.FailSafe)
}

// writeL2 writes enc, the value just stored in L1, to L2 for ttl: under the
// flight's lease with a [Leaser] (keeps I4: if the lease is gone, an
// invalidation came after the read began, and the value is taken back from
// L1 too), with a plain Set otherwise unless the flight was fenced. With a
// Leaser but no lease (another instance's load outlived LeaseWait, or L2
// failed), nothing is written: without a lease the write could not be
// fenced.
func (f *flight[V]) writeL2(ctx context.Context, enc []byte, ttl time.Duration) {
	c := f.c
	if c.l2 == nil || !c.epochUsable() {
		return
	}
	switch {
	case f.l2.lease != "":
		// The lease alone decides for L2: if it is intact, no invalidation
		// came after the read began, even if this flight was fenced in L1
		// (which only knows that an invalidation came after the flight
		// began, possibly before the lease was taken).
		if c.carrier != nil {
			full := c.Key(f.key)
			f.write = LeasedWrite{Key: full, Lease: f.l2.lease, Value: enc, TTL: ttl}
			f.wshard = c.breakerOfFull(full)
			if f.queued = c.queueWrite(f); f.queued {
				return // carry.go sends it and ends the flight
			}
		}
		if ok, err := c.l2SetLeased(ctx, f.key, f.l2.lease, enc, ttl); err == nil && !ok {
			f.leaseLost()
		}
	case c.leaser == nil && !c.fl.isFenced(&f.cl) && c.breakerOf(f.key).Allow():
		_ = c.l2Set(ctx, f.key, enc, ttl) // counted and reported by l2Set
	}
}

// leaseLost takes back f's value after its leased write found the lease
// gone: an invalidation removed it, so the value may be stale. Late callers
// must not share it, and L1 must not keep it (keeps I4). If the flight was
// fenced already, whatever fenced it (a Delete or Set here, or another
// instance's invalidation heard) has dealt with L1, where a Set may have
// put the newer value since: it is left alone.
func (f *flight[V]) leaseLost() {
	c := f.c
	f.exit = exitForget
	if c.fl.fenceCall(f.key, &f.cl) {
		c.ctr.leaseLost.Add(1)
		return
	}
	c.l1.Delete(f.key)
	// The install may still be queued behind the delete's removal. (A
	// flight may wait for L1 directly: Close waits for the flights before
	// it closes L1.)
	c.l1.Wait()
	c.ctr.leaseLost.Add(1)
}

// releaseLease gives back the flight's lease, if it holds one, when its
// load produced nothing to write, so the other instances do not wait
// LeaseWait for it. A stale value the lease replaced (kept beside the
// marker) is put back for what is left of its fail-safe life.
func (f *flight[V]) releaseLease(ctx context.Context) {
	c := f.c
	if f.l2.lease == "" {
		return
	}
	var keep time.Duration
	if s := f.l2.stale; s != nil {
		keep = time.Duration(s.Deadline - c.now())
	}
	_ = c.l2Op(ctx, OpL2Delete, f.key, func(ctx context.Context) error { // counted by l2Op
		return c.leaser.ReleaseLease(ctx, c.Key(f.key), f.l2.lease, keep)
	})
}

// shareUntil is how long a completed load may answer late joiners: the
// shortest L1 life its entry can get.
func (c *Cache[V]) shareUntil(negative bool) int64 {
	ttl := c.o.L1TTL
	if negative {
		ttl = min(ttl, c.o.NegativeTTL)
	}
	return c.now() + int64(float64(ttl)*(1-c.o.Jitter))
}
