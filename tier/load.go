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
}

// miss is the slow path of GetOrLoad: join or start the flight, then wait.
func (c *Cache[V]) miss(ctx context.Context, key string, tags []string, load LoadFunc[V]) (V, error) {
	var zero V
	if err := c.checkKey(key); err != nil {
		return zero, err
	}
	cl, leader := c.fl.join(key, c.now())
	if cl == nil {
		return zero, ErrClosed
	}
	c.ctr.misses.Add(1)
	if !c.noObs {
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventMiss, Key: c.obsKey(key), Tier: TierL1})
	}
	if leader {
		go c.run(ctx, req{key: key, tags: tags}, cl, load)
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		return zero, fmt.Errorf("tier: get %q: %w", key, context.Cause(ctx))
	}
	if cl.panicked != nil {
		panic(cl.panicked)
	}
	return cl.val, cl.err
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

// run is the flight for one key. It runs on its own goroutine and owns one
// count of c.fl.wg.
func (c *Cache[V]) run(ctx context.Context, r req, cl *call[V], load LoadFunc[V]) {
	defer c.fl.wg.Done()
	start := c.now()
	completed := false
	complete := func() {
		completed = true
		close(cl.done)
	}
	defer func() {
		if !completed { // the loader called runtime.Goexit
			cl.err = fmt.Errorf("tier: load %q: %w", r.key, ErrLoaderGoexit)
			complete()
		}
		c.fl.forget(r.key, cl)
	}()

	// Re-check L1: a caller that missed L1 just before the previous flight
	// for this key made its value visible and left the table gets here.
	// The Get is counted as unserved: the caller was counted as a miss.
	e, ok := c.l1.Get(r.key)
	if ok {
		c.ctr.l1Unserved.Add(1)
		if !c.fresh(e) {
			e = nil
		}
	} else {
		e = nil
	}
	if e != nil {
		if e.Negative {
			cl.err = ErrNotFound
		} else {
			cl.val = e.Value
		}
		cl.expires = e.Fresh
		complete()
		return
	}
	fctx, cancel := c.flightContext(ctx)
	defer cancel()
	e, lease := c.readL2(fctx, r, start, load != nil)
	if e != nil {
		if e.Negative {
			c.ctr.negativeHits.Add(1)
			cl.err = ErrNotFound
		} else {
			cl.val = e.Value
		}
		cl.expires = e.Fresh
		complete()
		c.installL1(cl, r.key, e, c.cost(r.key, e.Value, 0))
		return
	}
	if load == nil {
		cl.err = ErrNotFound
		complete()
		return
	}

	v, err := c.callLoader(fctx, r.key, cl, load)
	switch {
	case cl.panicked != nil:
		complete()
	case err == nil:
		cl.val = v
		cl.expires = c.shareUntil(false)
		complete()
		c.store(fctx, cl, r, v, false, start, lease)
	case c.isNotFound(err):
		if !errors.Is(err, ErrNotFound) {
			err = &notFoundError{err: err}
		}
		cl.err = err
		cl.expires = c.shareUntil(true)
		complete()
		c.store(fctx, cl, r, v, true, start, lease)
	default:
		cl.err = fmt.Errorf("tier: load %q: %w", r.key, err)
		complete()
	}
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
// in load unwinds through here to run's deferred handler.
func (c *Cache[V]) callLoader(ctx context.Context, key string, cl *call[V], load LoadFunc[V]) (v V, err error) {
	call := Call{Cache: c.o.Name, Op: OpLoad, Key: c.obsKey(key)}
	ctx = c.obs.Begin(ctx, call)
	t0 := time.Now()
	c.ctr.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			cl.panicked = newPanicError(r)
			err = cl.panicked
		}
		if err != nil && !c.isNotFound(err) {
			c.ctr.loadErrors.Add(1)
			c.obs.End(ctx, call, Result{Err: err, Duration: time.Since(t0)})
			return
		}
		c.obs.End(ctx, call, Result{Hit: err == nil, Duration: time.Since(t0)})
	}()
	return load(ctx, key)
}

// encode builds the L2 envelope of a value read (or loaded) at created,
// fresh for ttl, and refuses it if it is too large.
func (c *Cache[V]) encode(v V, negative bool, created int64, ttl time.Duration) ([]byte, error) {
	now := c.now()
	h := codec.Header{Codec: c.o.Codec.ID(), Schema: c.o.Schema, Created: created, SoftExpiry: now + int64(ttl), Deadline: now + int64(ttl)}
	if negative {
		h.Flags |= codec.FlagNegative
	}
	enc, err := codec.Encode(c.o.Codec, h, v, c.o.CompressAbove)
	if err == nil && len(enc) > c.o.MaxValueBytes {
		err = &ValueTooLargeError{Size: len(enc), Limit: c.o.MaxValueBytes}
	}
	return enc, err
}

// store encodes a loaded value (or a "not found"), refuses it if too large,
// and writes L2 then L1 unless an invalidation overtook the load: locally
// (the flight was fenced) or on any instance (the L2 lease was removed).
func (c *Cache[V]) store(ctx context.Context, cl *call[V], r req, v V, negative bool, start int64, lease string) {
	ttl := c.o.TTL
	if negative {
		ttl = c.o.NegativeTTL
	}
	ttl = c.jitter(ttl)
	enc, err := c.encode(v, negative, start, ttl)
	if err != nil {
		c.ctr.refused.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventValueRefused, Key: c.obsKey(r.key), Err: err})
		return
	}
	if c.l2 != nil && !c.fl.isFenced(cl) {
		switch {
		case lease != "":
			if ok, err := c.l2SetLeased(ctx, r.key, lease, enc, ttl); err == nil && !ok {
				c.ctr.leaseLost.Add(1)
				return // an invalidation removed our lease: the value may be stale
			}
		case c.leaser == nil && c.br.allow():
			_ = c.l2Set(ctx, r.key, enc, ttl) // counted and reported by l2Set; L1 still gets the value.
		}
		// With a Leaser but no lease (another instance's load outlived
		// LeaseWait, or L2 failed), nothing is written to L2: without a
		// lease the write could not be fenced.
	}
	now := c.now()
	l1ttl := min(ttl, c.jitter(c.o.L1TTL))
	e := &Entry[V]{Value: v, Negative: negative, Tags: r.tags, Created: start, Fresh: now + int64(l1ttl), Deadline: now + int64(l1ttl)}
	c.installL1(cl, r.key, e, c.cost(r.key, v, len(enc)))
}

// installL1 puts e in L1 unless cl was fenced, then waits until the write is
// visible so that the flight can leave the table.
func (c *Cache[V]) installL1(cl *call[V], key string, e *Entry[V], cost int64) {
	ttl := time.Duration(e.Deadline - c.now())
	if ttl <= 0 {
		return
	}
	accepted := false
	c.fl.install(cl, func() { accepted = c.l1.Set(key, e, cost, ttl) })
	if accepted {
		c.l1.Wait()
	}
}
