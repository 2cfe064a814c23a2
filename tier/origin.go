package tier

// origin.go: calling the loaders, for single and batch reads alike.

import (
	"context"
	"errors"
	"fmt"
)

// callLoader calls f's loader on ctx (see originCall). A panic becomes
// f.cl.panicked.
func (f *flight[V]) callLoader(ctx context.Context) (v V, err error) {
	err = f.c.originCall(ctx, f.key, []*flight[V]{f}, func(ctx context.Context) error {
		v, err = f.load(ctx, f.key)
		return err
	})
	return v, err
}

// callBatchLoader calls load for the keys of fs on ctx (see originCall). A
// panic becomes every flight's cl.panicked.
func (c *Cache[V]) callBatchLoader(ctx context.Context, fs []*flight[V], load BatchLoadFunc[V]) (vals map[string]V, err error) {
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	key := ""
	if len(keys) == 1 {
		key = keys[0]
	}
	err = c.originCall(ctx, key, fs, func(ctx context.Context) error {
		vals, err = load(ctx, keys)
		return err
	})
	return vals, err
}

// originCall makes one call of a loader, fn, for the flights fs (key names
// them for the observer: "" for a batch of several). With
// MaxConcurrentLoads it first waits for a slot, within ctx. It counts the
// load, reports it to the observer (a "not found" is not an error), and
// turns a panic into a [*PanicError] that it sets on every flight's call
// and returns. A runtime.Goexit in fn unwinds through it, to the flights'
// leave.
func (c *Cache[V]) originCall(ctx context.Context, key string, fs []*flight[V], fn func(ctx context.Context) error) (err error) {
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
			defer func() { <-c.sem }()
		case <-ctx.Done():
			c.ctr.loadErrors.Add(1)
			return fmt.Errorf("waiting for a load slot (MaxConcurrentLoads %d): %w", c.o.MaxConcurrentLoads, context.Cause(ctx))
		}
	}
	op := c.describe(OpLoad, key)
	ctx = c.obs.Begin(ctx, op)
	t0 := c.opStart()
	c.ctr.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			p := newPanicError(r)
			for _, f := range fs {
				f.cl.panicked = p
			}
			err = p
		}
		if err != nil && !c.isNotFound(err) {
			c.ctr.loadErrors.Add(1)
			c.obs.End(ctx, op, Result{Err: err, Duration: opDuration(t0)})
			return
		}
		c.obs.End(ctx, op, Result{Hit: err == nil, Duration: opDuration(t0)})
	}()
	return fn(ctx)
}

func (c *Cache[V]) isNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || (c.o.IsNotFound != nil && c.o.IsNotFound(err))
}
