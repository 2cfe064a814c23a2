package tier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/codec"
)

// req is what a flight loads: a key and the tags its value depends on.
type req struct {
	key  string
	tags []string
	// refresh marks a background refresh-ahead: it skips the L1 re-check
	// and takes L2 values only if they are newer than minFresh.
	refresh  bool
	minFresh int64
}

// miss is the slow path of a read: join or start the flight, then wait.
// stale, if not nil, is an L1 value that may stand in for a failed or slow
// load.
func (c *Cache[V]) miss(ctx context.Context, r req, load LoadFunc[V], stale *Entry[V]) (V, error) {
	var zero V
	if err := c.checkKey(r.key); err != nil {
		return zero, err
	}
	cl, leader := c.fl.join(r.key, c.now(), r.tags)
	if cl == nil {
		return zero, ErrClosed
	}
	c.ctr.misses.Add(1)
	if !c.noObs {
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventMiss, Key: c.obsKey(r.key), Tier: TierL1})
	}
	if leader {
		c.lead(ctx, r, cl, load, stale)
	}
	var soft <-chan time.Time
	if stale != nil && c.o.SoftTimeout > 0 {
		t := time.NewTimer(c.o.SoftTimeout)
		defer t.Stop()
		soft = t.C
	}
	select {
	case <-cl.done:
	case <-soft:
		return c.serveStale(ctx, r.key, stale, ReasonSoftTimeout, nil)
	case <-ctx.Done():
		return zero, fmt.Errorf("tier: get %q: %w", r.key, context.Cause(ctx))
	}
	if cl.panicked != nil {
		panic(cl.panicked)
	}
	if cl.stale {
		c.ctr.staleServed.Add(1)
	}
	if cl.err != nil && stale != nil && !errors.Is(cl.err, ErrNotFound) && c.now() < stale.Deadline {
		return c.serveStale(ctx, r.key, stale, ReasonOriginError, cl.err)
	}
	return cl.val, cl.err
}

// serveStale answers a read with a stale value and reports it.
func (c *Cache[V]) serveStale(ctx context.Context, key string, e *Entry[V], reason string, err error) (V, error) {
	c.ctr.staleServed.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventStaleServed, Key: c.obsKey(key), Tier: TierL1, Reason: reason, Err: err})
	if e.Negative {
		var zero V
		return zero, ErrNotFound
	}
	return e.Value, nil
}

// refreshAhead starts one background refresh of r's key from e (at most one
// per entry, and none while a flight for the key runs).
func (c *Cache[V]) refreshAhead(ctx context.Context, r req, load LoadFunc[V], e *Entry[V]) {
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	cl, leader := c.fl.joinRunning(r.key, c.now(), r.tags)
	if !leader {
		// A load of the key is already running (it may be finishing): let
		// a later hit try again if this entry is still the one in L1.
		e.refreshing.Store(false)
		return
	}
	c.ctr.refreshes.Add(1)
	r.refresh, r.minFresh = true, e.Fresh
	go c.run(ctx, r, cl, load, e, c.now(), nil)
}

// flightContext returns the context a flight runs on: the caller's values,
// no caller's cancellation, LoadTimeout, and cancelled by Close.
func (c *Cache[V]) flightContext(ctx context.Context) (context.Context, func()) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.LoadTimeout)
	stop := context.AfterFunc(c.stop, cancel)
	return fctx, func() {
		stop()
		cancel()
	}
}

// lead starts the flight cl on its leader's goroutine: the L1 re-check and
// the first L2 round trip (within L2Timeout, on the caller's context values
// but not its cancellation, and only when the caller's deadline leaves
// L2Timeout). A hit completes the call here, without a goroutine; anything
// else (a load, a lease to take or wait for) goes on in run on the flight's
// goroutine, which no caller's cancellation stops.
func (c *Cache[V]) lead(ctx context.Context, r req, cl *call[V], load LoadFunc[V], stale *Entry[V]) {
	handed := false  // run owns cl and the wg count
	retired := false // cl leaves the table once its L1 value is visible
	defer func() {
		if !handed {
			c.endLead(r.key, cl, retired)
		}
	}()
	start := c.now()
	if c.recheckL1(r, cl) {
		return
	}
	if stale != nil && c.o.SoftTimeout > 0 {
		// The caller has a stale value to fall back on after SoftTimeout,
		// which a read on its own goroutine could outlast.
		handed = true
		go c.run(ctx, r, cl, load, stale, start, nil)
		return
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < c.o.L2Timeout {
		// The caller's deadline could end the read midway, and go-redis
		// closes a connection whose reply was cut: with many such callers
		// the pool would churn. The flight reads on its own context.
		handed = true
		go c.run(ctx, r, cl, load, stale, start, nil)
		return
	}
	// Not the caller's cancellation either: a cancel during the read is
	// noticed when it ends, at most L2Timeout later.
	s := new(l2read[V])
	over := c.l2Start(context.WithoutCancel(ctx), r, start, load != nil, s)
	s.open = !over
	switch {
	case over && s.hit != nil:
		if retired = c.answerHit(cl, r.key, s.hit); retired {
			c.fl.retire(r.key, cl)
		}
	case over && load == nil:
		cl.err = c.absent(r.key, s.failed)
		close(cl.done)
	default:
		handed = true
		go c.run(ctx, r, cl, load, stale, start, s)
	}
}

// endLead ends a flight that lead completed (or that panicked on the
// leader's goroutine, in an observer say: its callers then get an error
// instead of waiting forever, and the panic goes on in the leader).
func (c *Cache[V]) endLead(key string, cl *call[V], retired bool) {
	select {
	case <-cl.done:
	default:
		cl.err = fmt.Errorf("tier: get %q: %w", key, errLeaderPanicked)
		close(cl.done)
	}
	if !retired {
		c.fl.forget(key, cl)
	}
	c.fl.wg.Done()
}

// recheckL1 completes cl from L1 if a fresh value is there now: a caller
// that missed L1 just before the previous flight for this key made its
// value visible and left the table gets here. The Get is counted as
// unserved: the caller was counted as a miss.
func (c *Cache[V]) recheckL1(r req, cl *call[V]) bool {
	if r.refresh {
		return false
	}
	e, ok := c.l1.Get(r.key)
	if !ok {
		return false
	}
	c.ctr.l1Unserved.Add(1)
	if !c.fresh(e) {
		return false
	}
	if e.Negative {
		cl.err = ErrNotFound
	} else {
		cl.val = e.Value
	}
	cl.expires = e.Fresh
	close(cl.done)
	return true
}

// answerHit completes cl with an entry read from L2 and puts it in L1. It
// reports whether L1 took it (the call must then be retired, not
// forgotten).
func (c *Cache[V]) answerHit(cl *call[V], key string, e *Entry[V]) bool {
	if e.Negative {
		c.ctr.negativeHits.Add(1)
		cl.err = ErrNotFound
	} else {
		cl.val = e.Value
	}
	cl.expires = e.Fresh
	installed := c.installL1(cl, key, e, c.cost(key, e.Value, 0)) // before the answer, as store does
	close(cl.done)
	return installed
}

// run is the rest of the flight for one key, on its own goroutine; it owns
// one count of c.fl.wg. s is what lead's first L2 round trip found (nil:
// run reads L2 itself, as a refresh does). stale, if not nil, is a value
// that may stand in for a failed load (from L1; run may also find one in
// L2).
func (c *Cache[V]) run(ctx context.Context, r req, cl *call[V], load LoadFunc[V], stale *Entry[V], start int64, s *l2read[V]) {
	defer c.fl.wg.Done()
	completed := false
	complete := func() {
		completed = true
		close(cl.done)
	}
	keep := false      // a failed call stays in the table for FailSafeThrottle
	installed := false // L1 took the call's value: retire the call, do not forget it
	defer func() {
		if !completed { // the loader called runtime.Goexit
			cl.err = fmt.Errorf("tier: load %q: %w", r.key, ErrLoaderGoexit)
			complete()
		}
		switch {
		case keep:
			time.AfterFunc(c.o.FailSafeThrottle, func() { c.fl.forget(r.key, cl) })
		case installed:
			c.fl.retire(r.key, cl)
		default:
			c.fl.forget(r.key, cl)
		}
	}()

	fctx, cancel := c.flightContext(ctx)
	defer cancel()
	if s == nil {
		s = new(l2read[V])
		if !c.l2Start(fctx, r, start, load != nil, s) {
			c.l2Finish(fctx, r, start, s)
		}
	} else if s.open {
		c.l2Finish(fctx, r, start, s)
	}
	if s.hit != nil {
		completed = true
		installed = c.answerHit(cl, r.key, s.hit)
		return
	}
	lease, l2stale := s.lease, s.stale
	if stale == nil {
		stale = l2stale
	}
	if load == nil {
		cl.err = c.absent(r.key, s.failed)
		complete()
		return
	}

	v, err := c.callLoader(fctx, r.key, cl, load)
	switch {
	case cl.panicked != nil:
		complete()
		c.releaseLease(fctx, r.key, lease, l2stale)
	case err == nil:
		cl.val = v
		cl.expires = c.shareUntil(false)
		installed = c.store(fctx, cl, r, v, false, start, lease, complete)
	case c.isNotFound(err):
		if !errors.Is(err, ErrNotFound) {
			err = &notFoundError{err: err}
		}
		cl.err = err
		cl.expires = c.shareUntil(true)
		installed = c.store(fctx, cl, r, v, true, start, lease, complete)
	case r.refresh:
		// A failed refresh-ahead changes nothing: the entry it started from
		// is still fresh. Callers that joined it fall back on their own.
		cl.err = fmt.Errorf("tier: refresh %q: %w", r.key, err)
		complete()
		c.releaseLease(fctx, r.key, lease, l2stale)
	case stale != nil && c.now() < stale.Deadline:
		// Fail-safe: the last value stands in for the error, and is re-armed
		// for FailSafeThrottle so the origin sees one attempt per key per
		// window.
		now := c.now()
		cl.val, cl.err, cl.stale = stale.Value, nil, true
		if stale.Negative {
			cl.err = ErrNotFound
		}
		cl.expires = min(now+int64(c.o.FailSafeThrottle), stale.Deadline)
		complete()
		c.obs.Event(fctx, Event{Cache: c.o.Name, Kind: EventStaleServed, Key: c.obsKey(r.key), Tier: TierL1, Reason: ReasonOriginError, Err: err})
		re := &Entry[V]{Value: stale.Value, Negative: stale.Negative, Tags: stale.Tags, Created: stale.Created, Fresh: cl.expires, Deadline: stale.Deadline, Stale: true}
		installed = c.installL1(cl, r.key, re, c.cost(r.key, stale.Value, 0))
		c.releaseLease(fctx, r.key, lease, l2stale)
	default:
		cl.err = fmt.Errorf("tier: load %q: %w", r.key, err)
		if c.o.FailSafe > 0 {
			// Throttle retries of a failing key that has no stale value:
			// callers in the next FailSafeThrottle share this error instead
			// of each trying the origin again (an invalidation of the key
			// ends the window at once).
			cl.expires = c.now() + int64(c.o.FailSafeThrottle)
			keep = true
		}
		complete()
		c.releaseLease(fctx, r.key, lease, l2stale)
	}
}

// absent is the error of a read without a loader that found nothing:
// ErrNotFound if L2 was asked, else an error matching ErrL2 that says why
// it could not be (an outage is not an answer).
func (c *Cache[V]) absent(key string, failed error) error {
	if failed == nil {
		return ErrNotFound
	}
	return fmt.Errorf("tier: get %q: %w: %w", key, ErrL2, failed)
}

// releaseLease gives back a lease whose load produced nothing to write, so
// the other instances do not wait LeaseWait for it. A stale value the lease
// replaced (kept beside the marker) is put back for what is left of its
// fail-safe life.
func (c *Cache[V]) releaseLease(ctx context.Context, key, lease string, stale *Entry[V]) {
	if lease == "" {
		return
	}
	var keep time.Duration
	if stale != nil {
		keep = time.Duration(stale.Deadline - c.now())
	}
	_ = c.l2Op(ctx, OpL2Delete, key, func(ctx context.Context) error { // counted by l2Op
		return c.leaser.ReleaseLease(ctx, c.Key(key), lease, keep)
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

func (c *Cache[V]) isNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || (c.o.IsNotFound != nil && c.o.IsNotFound(err))
}

// callLoader calls load, turning a panic into cl.panicked. A runtime.Goexit
// in load unwinds through here to run's deferred handler. With
// MaxConcurrentLoads, it first waits for a slot (within ctx).
func (c *Cache[V]) callLoader(ctx context.Context, key string, cl *call[V], load LoadFunc[V]) (v V, err error) {
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
			defer func() { <-c.sem }()
		case <-ctx.Done():
			c.ctr.loadErrors.Add(1)
			return v, fmt.Errorf("waiting for a load slot (MaxConcurrentLoads %d): %w", c.o.MaxConcurrentLoads, context.Cause(ctx))
		}
	}
	call := c.call(OpLoad, key)
	ctx = c.obs.Begin(ctx, call)
	t0 := c.opStart()
	c.ctr.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			cl.panicked = newPanicError(r)
			err = cl.panicked
		}
		if err != nil && !c.isNotFound(err) {
			c.ctr.loadErrors.Add(1)
			c.obs.End(ctx, call, Result{Err: err, Duration: opDuration(t0)})
			return
		}
		c.obs.End(ctx, call, Result{Hit: err == nil, Duration: opDuration(t0)})
	}()
	return load(ctx, key)
}

// encode builds the L2 envelope of a value read (or loaded) at created,
// fresh for ttl and kept FailSafe longer, and refuses it if it is too large.
func (c *Cache[V]) encode(v V, negative bool, created int64, ttl time.Duration) ([]byte, error) {
	now := c.now()
	h := codec.Header{Codec: c.o.Codec.ID(), Schema: c.o.Schema, Created: created, SoftExpiry: now + int64(ttl), Deadline: now + int64(ttl+c.o.FailSafe)}
	if negative {
		h.Flags |= codec.FlagNegative
	}
	enc, err := codec.Encode(c.o.Codec, h, v, c.o.CompressAbove)
	if err == nil && len(enc) > c.o.MaxValueBytes {
		err = &ValueTooLargeError{Size: len(enc), Limit: c.o.MaxValueBytes}
	}
	return enc, err
}

// newEntry returns the L1 entry of a value read at start, fresh for ttl.
func (c *Cache[V]) newEntry(v V, negative bool, tags []string, start, now int64, ttl time.Duration) *Entry[V] {
	e := &Entry[V]{Value: v, Negative: negative, Tags: tags, Created: start, Fresh: now + int64(ttl), Deadline: now + int64(ttl+c.o.FailSafe)}
	if c.o.RefreshAhead > 0 && !negative {
		e.RefreshAt = now + int64(float64(ttl)*c.o.RefreshAhead)
	}
	return e
}

// store encodes a loaded value (or a "not found") and refuses it if too
// large; puts it in L1 and waits until it is visible there; answers the
// callers (complete); then writes L2 off their path. An invalidation that
// overtook the load fences it: locally (the flight was fenced: nothing is
// installed) or on any instance (the L2 lease was removed: the L1 copy is
// taken back and nothing is written to L2).
//
// L1 comes before the answer so that a caller answered by the flight finds
// the value in L1 (or the flight in the table) on its next read. store
// reports whether L1 took the value (the call must then be retired).
func (c *Cache[V]) store(ctx context.Context, cl *call[V], r req, v V, negative bool, start int64, lease string, complete func()) (installed bool) {
	ttl := c.o.TTL
	if negative {
		ttl = c.o.NegativeTTL
	}
	ttl = c.jitter(ttl)
	enc, err := c.encode(v, negative, start, ttl)
	if err != nil {
		c.ctr.refused.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventValueRefused, Key: c.obsKey(r.key), Err: err})
		cl.expires = 0 // not cached, not shared with callers that come later either
		complete()
		return false
	}
	e := c.newEntry(v, negative, r.tags, start, c.now(), min(ttl, c.jitter(c.o.L1TTL)))
	installed = c.installL1(cl, r.key, e, c.cost(r.key, v, len(enc)))
	complete()
	if c.l2 == nil || !c.epochUsable() {
		return installed
	}
	switch {
	case lease != "":
		// The lease alone decides for L2: if it is intact, no invalidation
		// came after the read began, even if this flight was fenced in L1
		// (which only knows that an invalidation came after the flight
		// began, possibly before the lease was taken).
		if ok, err := c.l2SetLeased(ctx, r.key, lease, enc, ttl+c.o.FailSafe); err == nil && !ok {
			// An invalidation removed our lease: the value may be stale.
			// Take the L1 copy back; late callers must not share it.
			c.fl.forget(r.key, cl)
			c.l1.Delete(r.key)
			// The install above may still be queued behind the delete's
			// removal. (A flight may wait for L1 directly: Close waits for
			// the flights before it closes L1.)
			c.l1.Wait()
			c.ctr.leaseLost.Add(1)
		}
	case c.leaser == nil && !c.fl.isFenced(cl) && c.breakerOf(r.key).Allow():
		_ = c.l2Set(ctx, r.key, enc, ttl+c.o.FailSafe) // counted and reported by l2Set
	}
	// With a Leaser but no lease (another instance's load outlived
	// LeaseWait, or L2 failed), nothing is written to L2: without a lease
	// the write could not be fenced.
	return installed
}

// installL1 puts e in L1 unless cl was fenced, and reports whether L1
// took it. The write becomes visible asynchronously: the call must leave
// the flight table through retire, which waits for it.
func (c *Cache[V]) installL1(cl *call[V], key string, e *Entry[V], cost int64) bool {
	ttl := time.Duration(e.Deadline - c.now())
	if ttl <= 0 {
		return false
	}
	accepted := false
	c.fl.install(cl, func() { accepted = c.l1.Set(key, e, cost, ttl) })
	return accepted
}
