package dbcache

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache/tier"
)

// Wrap returns a function of the same shape as query that reads through c:
// the value of arg is cached under key(arg) (in c's namespace), loaded by
// query on a miss, once per key in the process however many callers miss
// together.
//
// The query's "no rows" error ([WithNotFound]; default sql.ErrNoRows) is
// cached as a negative entry for c's NegativeTTL. The callers that share
// the load that met it get the query's error itself; later reads answered
// by the negative entry (from L1, or from L2 on another instance) get the
// sentinel given to [WithNotFound]. Other errors are
// returned as [tier.Cache.GetOrLoad] returns them: they match the query's
// error with errors.Is.
//
// NOTE: c's Options.IsNotFound need not know the query's error: the
// wrapper marks it. The value returned may be shared with other callers
// (it is the cached one): do not mutate it. key must return a non-empty
// key that identifies arg exactly; keys of different queries sharing c
// must not collide.
func Wrap[K, V any](c *tier.Cache[V], key func(K) string, query func(context.Context, K) (V, error), opts ...Option) func(context.Context, K) (V, error) {
	return wrap(c, key, nil, query, newConfig(opts))
}

// WrapTagged is [Wrap] for a value that depends on the entities that
// tags(arg) names (for example "expert:42" or "expert:42:day:2025-06-01"):
// after c.InvalidateTags with one of them, the cached value is a miss on
// every instance, whatever its key. tags may be nil.
//
// NOTE: a key must always come with the same tags: every arg that key maps
// to one key must get the same tags(arg).
func WrapTagged[K, V any](c *tier.Cache[V], key func(K) string, tags func(K) []string, query func(context.Context, K) (V, error), opts ...Option) func(context.Context, K) (V, error) {
	return wrap(c, key, tags, query, newConfig(opts))
}

// WrapList is [WrapTagged] for a query that returns a list. An empty list is
// cached like any other value (it is not a "not found") and is returned as
// an empty, non-nil slice whichever tier answered, so callers do not see nil
// from one tier and an empty slice from another.
func WrapList[K, E any](c *tier.Cache[[]E], key func(K) string, tags func(K) []string, query func(context.Context, K) ([]E, error), opts ...Option) func(context.Context, K) ([]E, error) {
	get := wrap(c, key, tags, query, newConfig(opts))
	return func(ctx context.Context, arg K) ([]E, error) {
		l, err := get(ctx, arg)
		if err == nil && l == nil {
			l = []E{}
		}
		return l, err
	}
}

func wrap[K, V any](c *tier.Cache[V], key func(K) string, tags func(K) []string, query func(context.Context, K) (V, error), cfg config) func(context.Context, K) (V, error) {
	return func(ctx context.Context, arg K) (V, error) {
		load := func(ctx context.Context, _ string) (V, error) {
			v, err := query(ctx, arg)
			if err != nil && cfg.isNotFound(err) {
				return v, &notFound{err: err}
			}
			return v, err
		}
		var (
			v   V
			err error
		)
		if tags != nil {
			v, err = c.GetOrLoadTagged(ctx, key(arg), tags(arg), load)
		} else {
			v, err = c.GetOrLoad(ctx, key(arg), load)
		}
		if err == nil {
			return v, nil
		}
		var zero V
		if nf := (*notFound)(nil); errors.As(err, &nf) {
			return zero, nf.err // this read's own load met "no rows"
		}
		if errors.Is(err, tier.ErrNotFound) {
			return zero, cfg.notFound // answered by a negative entry
		}
		return zero, err
	}
}
