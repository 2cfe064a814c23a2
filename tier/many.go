package tier

import (
	"context"
	"errors"
	"fmt"
)

// BatchLoadFunc loads several keys from the origin in one go. It returns the
// values it found; a key absent from the map has no value and is cached as
// "not found". It gets only the keys that missed both tiers and that no
// other load in the process is already loading.
type BatchLoadFunc[V any] func(ctx context.Context, keys []string) (map[string]V, error)

// GetOrLoadMany is [Cache.GetOrLoad] for several keys: L1 first, then one L2
// round trip for the keys that missed, then one call of load for the keys
// that missed both (keys that another call is already loading are waited
// for, not loaded twice). The map holds the keys that have a value; keys
// without one are absent. Duplicate keys are answered once.
//
// NOTE: the batch path takes no L2 leases, so with an L2 that fences
// writes with leases (backends/goredis) the values it loads go to L1 only;
// values other calls put in L2 are still read from it.
//
// NOTE: values may be shared with other callers: do not mutate them. A
// panicking batch loader makes every caller waiting on one of its keys
// panic with a [*PanicError].
func (c *Cache[V]) GetOrLoadMany(ctx context.Context, keys []string, load BatchLoadFunc[V]) (map[string]V, error) {
	out := make(map[string]V, len(keys))
	var missing []string
	var asked map[string]struct{}
	for _, k := range keys {
		if err := c.checkKey(k); err != nil {
			return nil, err
		}
		if len(keys) > 1 {
			if asked == nil {
				asked = make(map[string]struct{}, len(keys))
			}
			if _, dup := asked[k]; dup {
				continue
			}
			asked[k] = struct{}{}
		}
		if e, ok := c.l1.Get(k); ok {
			if c.fresh(e) {
				if e.Stale {
					c.ctr.staleServed.Add(1)
				}
				if e.Negative {
					c.ctr.negativeHits.Add(1)
				} else {
					out[k] = e.Value
				}
				continue
			}
			c.ctr.l1Unserved.Add(1)
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return out, nil
	}
	calls, leaders, ok := c.fl.joinMany(missing, c.now())
	if !ok {
		return nil, ErrClosed
	}
	c.ctr.misses.Add(uint64(len(missing)))
	var ownKeys []string
	var ownCalls []*call[V]
	for i, lead := range leaders {
		if lead {
			ownKeys = append(ownKeys, missing[i])
			ownCalls = append(ownCalls, calls[i])
		}
	}
	if len(ownKeys) > 0 {
		go c.runMany(ctx, ownKeys, ownCalls, load)
	}
	var errs []error
	for i, cl := range calls {
		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("tier: get many: %w", context.Cause(ctx))
		}
		if cl.panicked != nil {
			panic(cl.panicked)
		}
		switch {
		case cl.err == nil:
			out[missing[i]] = cl.val
		case errors.Is(cl.err, ErrNotFound):
		default:
			errs = append(errs, cl.err)
		}
	}
	return out, errors.Join(errs...)
}

// runMany is the flight for a batch of keys; it owns one count of c.fl.wg.
func (c *Cache[V]) runMany(ctx context.Context, keys []string, calls []*call[V], load BatchLoadFunc[V]) {
	defer c.fl.wg.Done()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.LoadTimeout)
	stop := context.AfterFunc(c.stop, cancel)
	defer func() {
		stop()
		cancel()
	}()
	start := c.now()
	done := make([]bool, len(calls))
	installed := make([]bool, len(calls)) // retire these calls, forget the others
	complete := func(i int) {
		done[i] = true
		close(calls[i].done)
	}
	defer func() {
		for i, cl := range calls {
			if !done[i] { // the loader called runtime.Goexit
				cl.err = fmt.Errorf("tier: load %q: %w", keys[i], ErrLoaderGoexit)
				complete(i)
			}
			if installed[i] {
				c.fl.retire(keys[i], cl)
			} else {
				c.fl.forget(keys[i], cl)
			}
		}
	}()

	// L2: one round trip for the whole batch.
	var rest []int
	entries := c.manyFromL2(fctx, keys, start)
	for i, e := range entries {
		if e == nil {
			rest = append(rest, i)
			continue
		}
		if e.Negative {
			c.ctr.negativeHits.Add(1)
			calls[i].err = ErrNotFound
		} else {
			calls[i].val = e.Value
		}
		calls[i].expires = e.Fresh
		complete(i)
		installed[i] = c.installL1(calls[i], keys[i], e, c.cost(keys[i], e.Value, 0))
	}
	if len(rest) == 0 {
		return
	}
	if load == nil {
		for _, i := range rest {
			calls[i].err = ErrNotFound
			complete(i)
		}
		return
	}

	restKeys := make([]string, len(rest))
	for j, i := range rest {
		restKeys[j] = keys[i]
	}
	vals, err, panicked := c.callBatchLoader(fctx, restKeys, load)
	for _, i := range rest {
		cl := calls[i]
		switch {
		case panicked != nil:
			cl.panicked = panicked
			complete(i)
		case err != nil:
			cl.err = fmt.Errorf("tier: load %q: %w", keys[i], err)
			complete(i)
		default:
			v, found := vals[keys[i]]
			if found {
				cl.val = v
			} else {
				cl.err = ErrNotFound
			}
			cl.expires = c.shareUntil(!found)
			installed[i] = c.store(fctx, cl, req{key: keys[i]}, v, !found, start, "", func() { complete(i) })
		}
	}
}

func (c *Cache[V]) callBatchLoader(ctx context.Context, keys []string, load BatchLoadFunc[V]) (vals map[string]V, err error, panicked *PanicError) {
	call := c.call(OpLoad, "")
	if len(keys) == 1 {
		call = c.call(OpLoad, keys[0])
	}
	ctx = c.obs.Begin(ctx, call)
	t0 := c.opStart()
	c.ctr.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			panicked = newPanicError(r)
			err = panicked
		}
		if err != nil {
			c.ctr.loadErrors.Add(1)
		}
		c.obs.End(ctx, call, Result{Hit: err == nil, Err: err, Duration: opDuration(t0)})
	}()
	vals, err = load(ctx, keys)
	return vals, err, nil
}

// manyFromL2 reads keys from L2, one round trip per shard (one in all
// without a [Sharder]; the keys of a shard whose breaker is open are not
// read); entries[i] is nil for a miss. Failures are handled as in l2Get.
func (c *Cache[V]) manyFromL2(ctx context.Context, keys []string, start int64) []*Entry[V] {
	entries := make([]*Entry[V], len(keys))
	if c.l2 == nil {
		return entries
	}
	if !c.epochUsable() {
		c.fallback(ctx, "", ReasonEpochUnknown, nil)
		return entries
	}
	pfx := c.epoch.Load().pfx
	shards := map[string][]int{}
	for i, k := range keys {
		shard := c.shardOf(pfx + k)
		shards[shard] = append(shards[shard], i)
	}
	for shard, idx := range shards {
		br := c.brs.of(shard)
		if !br.Allow() {
			reason, _ := br.refused()
			c.fallback(ctx, "", reason, nil)
			continue
		}
		c.manyFromShard(ctx, br, keys, idx, pfx, start, entries)
	}
	return entries
}

// manyFromShard reads the keys keys[i] for i in idx, all on the shard of
// br, in one round trip, into entries.
func (c *Cache[V]) manyFromShard(ctx context.Context, br *shard, keys []string, idx []int, pfx string, start int64, entries []*Entry[V]) {
	full := make([]string, len(idx))
	for j, i := range idx {
		full[j] = pfx + keys[i]
	}
	call := c.call(OpL2Get, "")
	octx := c.obs.Begin(ctx, call)
	t0 := c.opStart()
	l2ctx, cancel := context.WithTimeout(octx, c.o.L2Timeout)
	bs, err := c.l2.GetMany(l2ctx, full)
	cancel()
	if err != nil {
		if c.stop.Err() == nil {
			c.l2Failed(octx, br, "", err)
		}
		c.obs.End(octx, call, Result{Err: err, Duration: opDuration(t0)})
		return
	}
	br.Success()
	var corrupt []string
	hits := 0
	for j, b := range bs {
		if b == nil || j >= len(idx) {
			continue
		}
		if isLease(b) {
			continue // another instance is loading it; this batch loads it too
		}
		i := idx[j]
		e, _, derr := c.decode(b, start)
		switch {
		case derr == nil:
			entries[i] = e
			hits++
		case errors.Is(derr, ErrNotFound), errors.Is(derr, errExpired):
		default:
			c.ctr.decodeErrors.Add(1)
			c.obs.Event(octx, Event{Cache: c.o.Name, Kind: EventDecodeError, Key: c.obsKey(keys[i]), Tier: TierL2, Err: derr})
			corrupt = append(corrupt, keys[i])
		}
	}
	c.ctr.l2Hits.Add(uint64(hits))
	if len(corrupt) > 0 {
		_, _ = c.l2Delete(octx, corrupt...) // a failure is counted by l2Delete; the key is retried on its next miss.
	}
	c.obs.End(octx, call, Result{Hit: hits > 0, Duration: opDuration(t0)})
}
