package tier

// read.go: the read path after an L1 miss, as one story: a flight per load,
// the steps it takes in order (numbered as in the package doc), and how it
// ends.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The read path keeps these invariants; the functions that enforce one say
// so ("keeps I3").
//
//   - I1, ownership: every call added to the flight table leaves it exactly
//     once, through leave, and the goroutine that will call leave owns one
//     wg count (see [flights]).
//   - I2, answer: a flight answers its call exactly once (closes done), and
//     before it leaves; a leader that panics, or a loader that calls
//     runtime.Goexit (on the flight's goroutine or the leader's), still
//     answers (with an error), in leave.
//   - I3, L1 fence: a load that began before an invalidation never installs
//     its value in L1 after it ([flights.install] under the table's lock).
//   - I4, L2 fence: a value read before a Delete is never written to L2
//     after it: with a [Leaser] L2 is written only under this flight's
//     lease, which a Delete removes (see [Leaser]); without a lease it is
//     not written.
//   - I5, trust: an entry whose read began before the trust floor, or too
//     long ago while the invalidator cannot vouch for L1, is not served
//     (see trust.go).

// flight is one load of one key after an L1 miss: its call in the table
// and the state the load carries from step to step. It is owned by one
// goroutine at a time (I1): the caller that started it while it leads
// ([flight.lead]), then the flight's own goroutine ([flight.finish]); the
// callers that wait on it see only cl's result, after cl.done is closed.
type flight[V any] struct {
	cl  call[V] // the flight's entry in the table (flights.m[key] == &cl until it leaves)
	key string

	// Set when the flight starts; read-only after.
	c    *Cache[V]
	ctx  context.Context // the first caller's values, never its cancellation (see detach)
	load LoadFunc[V]     // nil: a Get, which reads L2 but does not load
	// stale is an L1 value past its fresh life that may stand in for a
	// failed or slow load (Options.FailSafe); nil if none.
	stale *Entry[V]
	// refresh marks a background refresh-ahead: it skips the L1 re-check
	// and takes an L2 value only if it is fresher than minFresh.
	refresh  bool
	minFresh int64

	l2   l2Result[V] // what L2 said (l2read.go)
	exit exit        // how cl leaves the table; exitForget unless a step says otherwise

	// write is the leased write to L2 handed to the cache's write queue
	// (to the shard wshard) when queued is set: the queue then owns the
	// flight and ends it (carry.go).
	write   LeasedWrite
	wshard  *shard
	queued  bool
	retried bool // the write failed in a lease's round trip: no lease carries it again
}

// start is when the flight's read began: the Created of every entry it
// stores, compared with the trust floor and tag invalidations (I5).
func (f *flight[V]) start() int64 { return f.cl.started }

// miss is the slow path of a read: it joins the key's flight, or starts
// one and leads it, then waits for the answer. stale, if not nil, is an L1
// value that may stand in for a failed or slow load.
func (c *Cache[V]) miss(ctx context.Context, key string, tags []string, load LoadFunc[V], stale *Entry[V]) (V, error) {
	if err := c.checkKey(key); err != nil {
		var zero V
		return zero, err
	}
	if err := c.ended(ctx, "get", key); err != nil {
		var zero V
		return zero, err
	}
	cl, f := c.fl.join(key, c.now(), tags)
	if cl == nil {
		var zero V
		return zero, ErrClosed
	}
	c.ctr.misses.Add(1)
	if !c.noObs {
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventMiss, Key: c.obsKey(key), Tier: TierL1})
	}
	if f != nil {
		f.c, f.ctx, f.load, f.stale = c, detach(ctx), load, stale
		if f.lead(ctx) {
			if f.waitsWhole(ctx) {
				f.finish()
			} else {
				go f.finish()
			}
		}
	}
	return c.await(ctx, key, cl, stale)
}

// lead runs the first steps of f on the goroutine of the caller that
// started it, and reports whether the flight must go on (the caller then
// runs finish, on a new goroutine that takes over f and its wg count unless
// the caller would wait for all of it anyway: waitsWhole).
// Otherwise f ended here, also when a step panicked (I1, I2): an L2 hit
// costs no goroutine hand-off.
func (f *flight[V]) lead(ctx context.Context) (goOn bool) {
	defer func() {
		if !goOn {
			f.leave(errLeaderPanicked)
		}
	}()
	if f.fromL1() { // 2. re-check L1: the previous flight's value may have reached it
		return false
	}
	if !f.readsInline(ctx) {
		return true
	}
	switch f.readL2(f.ctx) { // 3. the first L2 round trip
	case l2Hit:
		f.answerHit()
		return false
	case l2Miss, l2Failed:
		if f.load == nil {
			f.answerAbsent()
			return false
		}
	}
	return true // 4-6 (lease, origin, stores) on the flight's goroutine
}

// finish runs the rest of f on its own goroutine (or the leader's: see
// waitsWhole), on a context that no
// caller's cancellation stops (LoadTimeout and Close do): the part of the
// L2 read the first round trip left open, the origin, then L1, the answer
// and L2. It owns f and its wg count, and ends it through leave (I1).
func (f *flight[V]) finish() {
	defer func() {
		if !f.queued { // else the write queue ends it
			f.leave(ErrLoaderGoexit)
		}
	}()
	ctx, cancel := f.c.flightContext(f.ctx)
	defer cancel()
	if f.l2.outcome == l2Unread { // handed on before the first round trip, or a refresh
		f.readL2(ctx)
	}
	if f.l2.outcome == l2LeaseNeeded {
		f.leaseOrWait(ctx) // 4. take the key's lease, or wait for another instance's load
	}
	switch {
	case f.l2.outcome == l2Hit:
		f.answerHit()
	case f.load == nil:
		f.answerAbsent()
	default:
		v, err := f.callLoader(ctx) // 5. the origin
		f.settle(ctx, v, err)       // 6. L1, the answer, L2; or fail-safe; or the error
	}
}

// leave ends f (keeps I1, I2): a call left unanswered (the leader panicked,
// or the loader called runtime.Goexit: why) gets an error, then the call
// leaves the table as f.exit says and the flight's wg count is given back.
// The goroutine that owns f calls it exactly once.
func (f *flight[V]) leave(why error) {
	if !f.cl.isDone() {
		op := "load"
		if why == errLeaderPanicked {
			op = "get"
		}
		f.cl.err = fmt.Errorf("tier: %s %s: %w", op, f.c.errKey(f.key), why)
		close(f.cl.done)
	}
	f.c.fl.leave(f.key, &f.cl, f.exit)
}

// waitsWhole reports whether the leader, whose context is ctx, would wait
// for the flight up to its answer anyway, and the flight has little to do
// after it, so that finish may run on the leader's goroutine instead of a
// new one: the context can never end, the leader holds no stale value to
// serve after SoftTimeout, and a write to L2 would be queued (a
// [WriteCarrier]), not sent. (A background job's context, say; a request's
// can end, and its flight then runs on a goroutine of its own so that the
// caller can leave when it does.) A lease given back after a failed load is
// still one round trip, within L2Timeout, before the leader gets the
// error. A loader's runtime.Goexit then ends the leader's goroutine (the
// others waiting get ErrLoaderGoexit).
func (f *flight[V]) waitsWhole(ctx context.Context) bool {
	c := f.c
	return ctx.Done() == nil && (f.stale == nil || c.o.SoftTimeout == 0) && (c.l2 == nil || c.carrier != nil)
}

// readsInline reports whether the first L2 round trip may run on the
// goroutine of the leader, whose context is ctx. Not when the caller holds
// a stale value to serve after SoftTimeout, which the read could outlast;
// nor when its deadline is nearer than L2Timeout: the deadline could end
// the read midway, and go-redis closes a connection whose reply was cut
// (with many such callers the pool would churn). The read is on the
// caller's values but not its cancellation (f.ctx): a cancel during it is
// noticed when it ends, at most L2Timeout later.
func (f *flight[V]) readsInline(ctx context.Context) bool {
	if f.stale != nil && f.c.o.SoftTimeout > 0 {
		return false
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return true
	}
	return time.Until(dl) >= f.c.o.L2Timeout
}

// fromL1 answers f from L1 if a fresh value is there now: a caller that
// missed L1 just before the previous flight for the key made its value
// visible and left the table gets here. The Get is counted as unserved:
// the caller was counted as a miss.
func (f *flight[V]) fromL1() bool {
	if f.refresh {
		return false
	}
	e, ok := f.c.l1.Get(f.key)
	if !ok {
		return false
	}
	f.c.ctr.l1Unserved.Add(1)
	if !f.c.fresh(e) {
		return false
	}
	f.answerWith(e, TierL1) // exitForget: the value is visible in L1 already
	close(f.cl.done)
	return true
}

// answerWith sets the call's answer to e's value (or its "not found"),
// shared with late joiners while e is fresh; e came from the tier from.
// The caller closes done.
func (f *flight[V]) answerWith(e *Entry[V], from Tier) {
	if e.Negative {
		f.c.negativeHit(f.ctx, f.key, from)
		f.cl.err = ErrNotFound
	} else {
		f.cl.val = e.Value
	}
	f.cl.expires = e.Fresh
}

// answerHit answers f with the entry L2 gave (f.l2.hit) and puts it in L1
// first, charged with the size of the bytes it was decoded from.
func (f *flight[V]) answerHit() {
	e := f.l2.hit
	f.answerWith(e, TierL2)
	f.toL1(e)
	close(f.cl.done)
}

// toL1 puts e in L1 unless the flight was fenced (keeps I3), charged with
// its encoded size, and if L1 took it the call must be retired: the write
// becomes visible asynchronously, and the call answers until it does.
func (f *flight[V]) toL1(e *Entry[V]) {
	c := f.c
	ttl := time.Duration(e.Deadline - c.now())
	if ttl <= 0 {
		return
	}
	cost := c.cost(f.key, e.Value, e.size)
	accepted := false
	c.fl.install(&f.cl, func() { accepted = c.l1.Set(f.key, e, cost, ttl) })
	if accepted {
		f.exit = exitRetire
	}
}

// answerAbsent answers a read without a loader that L2 did not answer:
// ErrNotFound if L2 was asked, else an error matching ErrL2 that says why it
// could not be (an outage is not an answer).
func (f *flight[V]) answerAbsent() {
	if f.l2.err == nil {
		f.cl.err = ErrNotFound
	} else {
		f.cl.err = fmt.Errorf("tier: get %s: %w: %w", f.c.errKey(f.key), ErrL2, f.l2.err)
	}
	close(f.cl.done)
}

// settle ends a load that returned v, err: it stores a value or a "not
// found" (store.go); a refresh that failed changes nothing; a failure with
// a stale value at hand re-arms it (fail-safe); any other failure answers
// the error, shared for FailSafeThrottle with FailSafe.
func (f *flight[V]) settle(ctx context.Context, v V, err error) {
	c := f.c
	switch stale := f.fallbackValue(); {
	case f.cl.panicked != nil:
		close(f.cl.done)
		f.releaseLease(ctx)
	case err == nil:
		f.cl.val = v
		f.store(ctx, v, false)
	case c.isNotFound(err):
		if !errors.Is(err, ErrNotFound) {
			err = &notFoundError{err: err}
		}
		f.cl.err = err
		f.store(ctx, v, true)
	case f.refresh:
		// The entry the refresh started from is still fresh. Callers that
		// joined it fall back on their own.
		f.cl.err = fmt.Errorf("tier: refresh %s: %w", c.errKey(f.key), err)
		close(f.cl.done)
		f.releaseLease(ctx)
	case stale != nil && c.now() < stale.Deadline:
		f.rearm(ctx, stale, err)
	default:
		f.cl.err = fmt.Errorf("tier: load %s: %w", c.errKey(f.key), err)
		if c.o.FailSafe > 0 {
			// Throttle retries of a failing key that has no stale value:
			// callers in the next FailSafeThrottle share this error instead
			// of each trying the origin again (an invalidation of the key
			// ends the window at once).
			f.cl.expires = c.now() + int64(c.o.FailSafeThrottle)
			f.exit = exitKeep
		}
		close(f.cl.done)
		f.releaseLease(ctx)
	}
}

// fallbackValue is the stale value that may stand in for a failed load:
// the caller's from L1, else one met in L2.
func (f *flight[V]) fallbackValue() *Entry[V] {
	if f.stale != nil {
		return f.stale
	}
	return f.l2.stale
}

// rearm answers a failed load with stale (fail-safe) and puts it back in
// L1 for FailSafeThrottle, so the origin sees one attempt per key per
// window.
func (f *flight[V]) rearm(ctx context.Context, stale *Entry[V], err error) {
	c := f.c
	f.cl.val, f.cl.stale = stale.Value, true
	if stale.Negative {
		f.cl.err = ErrNotFound
	}
	f.cl.expires = min(c.now()+int64(c.o.FailSafeThrottle), stale.Deadline)
	// Reported before the answer: a caller that got the stale value sees
	// the event counted.
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventStaleServed, Key: c.obsKey(f.key), Tier: TierL1, Reason: ReasonOriginError, Err: err})
	close(f.cl.done)
	re := &Entry[V]{Value: stale.Value, Negative: stale.Negative, Tags: stale.Tags, Created: stale.Created,
		Fresh: f.cl.expires, Deadline: stale.Deadline, Stale: true, size: c.sizeOf(stale)}
	f.toL1(re)
	f.releaseLease(ctx)
}

// await waits for cl's answer; a caller holding a stale value waits at
// most SoftTimeout, and gets the stale value instead of the load's error.
func (c *Cache[V]) await(ctx context.Context, key string, cl *call[V], stale *Entry[V]) (V, error) {
	var soft <-chan time.Time
	if stale != nil && c.o.SoftTimeout > 0 {
		t := time.NewTimer(c.o.SoftTimeout)
		defer t.Stop()
		soft = t.C
	}
	select {
	case <-cl.done:
	case <-soft:
		return c.serveStale(ctx, key, stale, ReasonSoftTimeout, nil)
	case <-ctx.Done():
		var zero V
		return zero, fmt.Errorf("tier: get %s: %w", c.errKey(key), context.Cause(ctx))
	}
	if cl.panicked != nil {
		panic(cl.panicked)
	}
	if cl.stale {
		c.ctr.staleServed.Add(1)
	}
	if cl.err != nil && stale != nil && !errors.Is(cl.err, ErrNotFound) && c.now() < stale.Deadline {
		return c.serveStale(ctx, key, stale, ReasonOriginError, cl.err)
	}
	return cl.val, cl.err
}

// serveStale answers a read with a stale value and reports it.
func (c *Cache[V]) serveStale(ctx context.Context, key string, e *Entry[V], reason Reason, err error) (V, error) {
	c.ctr.staleServed.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventStaleServed, Key: c.obsKey(key), Tier: TierL1, Reason: reason, Err: err})
	if e.Negative {
		var zero V
		return zero, ErrNotFound
	}
	return e.Value, nil
}

// negativeHit counts a miss answered by a cached "not found" found in the
// tier from, and reports it (L1 hits, negative or not, are only counted).
func (c *Cache[V]) negativeHit(ctx context.Context, key string, from Tier) {
	c.ctr.negativeHits.Add(1)
	if !c.noObs {
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventNegativeHit, Key: c.obsKey(key), Tier: from})
	}
}

// refreshAhead starts one background refresh of key from e (at most one per
// entry, and none while a flight for the key runs).
func (c *Cache[V]) refreshAhead(ctx context.Context, key string, tags []string, load LoadFunc[V], e *Entry[V]) {
	if ctx.Err() != nil || !e.refreshing.CompareAndSwap(false, true) {
		return // a caller whose context has ended starts nothing
	}
	f := c.fl.joinRunning(key, c.now(), tags)
	if f == nil {
		// A load of the key is already running (it may be finishing): let
		// a later hit try again if this entry is still the one in L1.
		e.refreshing.Store(false)
		return
	}
	c.ctr.refreshes.Add(1)
	f.c, f.ctx, f.load, f.stale = c, detach(ctx), load, e
	f.refresh, f.minFresh = true, e.Fresh
	go f.finish()
}

// detach returns ctx's values without its cancellation or deadline (a
// context that can never be cancelled is its own detached copy).
func detach(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		if _, ok := ctx.Deadline(); !ok {
			return ctx
		}
	}
	return context.WithoutCancel(ctx)
}

// flightContext returns the context a flight's goroutine runs on: ctx
// (detached), LoadTimeout, and cancelled by Close.
func (c *Cache[V]) flightContext(ctx context.Context) (context.Context, func()) {
	fctx, cancel := context.WithTimeout(ctx, c.o.LoadTimeout)
	stop := context.AfterFunc(c.stop, cancel)
	return fctx, func() {
		stop()
		cancel()
	}
}
