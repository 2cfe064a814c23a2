package tier

// many.go: the batch read path, GetOrLoadMany. It shares the single read's
// L1 check, L2 gate and decode (fromL2), loader call and store; what
// differs is one L2 round trip and one loader call for the whole batch, and
// no leases.

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
// without one are absent. Duplicate keys are answered once. With a nil
// load the map holds what the tiers have (nothing is loaded or cached for
// the other keys).
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
		if e, ok := c.l1Fresh(k); ok {
			if v, err := c.served(e); err == nil {
				out[k] = v
			}
			continue
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return out, nil
	}
	if err := c.ended(ctx, "get many", ""); err != nil {
		return nil, err
	}
	calls, lead, ok := c.fl.joinMany(missing, c.now())
	if !ok {
		return nil, ErrClosed
	}
	c.ctr.misses.Add(uint64(len(missing)))
	if len(lead) > 0 {
		wctx := detach(ctx)
		for _, f := range lead {
			f.c, f.ctx = c, wctx
		}
		go c.loadMany(wctx, lead, load)
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

// loadMany runs the flights fs of a batch on one goroutine: one L2 round
// trip for all, one loader call for those L2 did not answer, then each
// one's store. It owns fs and their wg counts, and ends each through leave
// (I1).
func (c *Cache[V]) loadMany(ctx context.Context, fs []*flight[V], load BatchLoadFunc[V]) {
	defer func() {
		for _, f := range fs {
			f.leave(ErrLoaderGoexit)
		}
	}()
	ctx, cancel := c.flightContext(ctx)
	defer cancel()
	c.readManyL2(ctx, fs) // 3. one L2 round trip for the batch
	var rest []*flight[V]
	for _, f := range fs {
		if f.l2.outcome == l2Hit {
			f.answerHit()
		} else {
			rest = append(rest, f)
		}
	}
	if len(rest) == 0 {
		return
	}
	if load == nil {
		for _, f := range rest {
			f.cl.err = ErrNotFound
			close(f.cl.done)
		}
		return
	}
	vals, err := c.callBatchLoader(ctx, rest, load) // 5. one origin call
	for _, f := range rest {                        // 6. L1, the answer, L2
		v, found := vals[f.key]
		switch {
		case f.cl.panicked != nil:
			close(f.cl.done)
		case err != nil:
			f.cl.err = fmt.Errorf("tier: load %s: %w", c.errKey(f.key), err)
			close(f.cl.done)
		case found:
			f.cl.val = v
			f.store(ctx, v, false)
		default:
			f.cl.err = ErrNotFound
			f.store(ctx, v, true)
		}
	}
}

// readManyL2 reads the keys of fs from L2, one round trip per shard (one
// in all without a [Sharder]), and records each one's outcome: l2Hit,
// l2Miss (nothing usable, or another instance's lease: the batch loads the
// key too), or l2Failed (L2 could not be asked: the epoch for all, a
// pending Delete for its key, a shard's open breaker for its keys; or its
// round trip failed). Bad bytes are reported and deleted.
func (c *Cache[V]) readManyL2(ctx context.Context, fs []*flight[V]) {
	if c.l2 == nil {
		for _, f := range fs {
			f.l2.end(l2Miss)
		}
		return
	}
	if err := c.epochGate(ctx, ""); err != nil {
		failAll(fs, err)
		return
	}
	pfx := c.epoch.Load().pfx
	shards := map[string][]*flight[V]{}
	for _, f := range fs {
		if err := c.deleteGate(ctx, f.key); err != nil {
			failAll([]*flight[V]{f}, err)
			continue
		}
		shard := c.shardOf(pfx + f.key)
		shards[shard] = append(shards[shard], f)
	}
	var bad []string
	for shard, fs := range shards {
		br := c.brs.of(shard)
		if !br.Allow() {
			reason, err := br.refused()
			c.fallback(ctx, "", reason, nil)
			failAll(fs, err)
			continue
		}
		keys, full := make([]string, len(fs)), make([]string, len(fs))
		for i, f := range fs {
			keys[i], full[i] = f.key, pfx+f.key
		}
		bs, err := c.l2GetMany(ctx, br, keys, full)
		if err != nil {
			failAll(fs, err)
			continue
		}
		for i, f := range fs {
			f.l2.end(l2Miss)
			if i >= len(bs) || bs[i] == nil || isLease(bs[i]) {
				continue
			}
			e, err := c.fromL2(ctx, f.key, nil, bs[i], nil, f.start())
			switch {
			case err == nil:
				f.l2.hit = e
				f.l2.end(l2Hit)
			case errors.Is(err, ErrCorrupt):
				bad = append(bad, f.key)
			}
		}
	}
	if len(bad) > 0 {
		_, _ = c.l2Delete(ctx, bad...) // a failure is counted by l2Delete; the key is retried on its next miss.
	}
}

// failAll records that L2 could not be asked for fs, for err.
func failAll[V any](fs []*flight[V], err error) {
	for _, f := range fs {
		f.l2.err = err
		f.l2.end(l2Failed)
	}
}
