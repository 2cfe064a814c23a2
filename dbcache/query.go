package dbcache

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache/tier"
)

// Query is a query function read through a cache: what [Wrap],
// [WrapTagged] and [WrapList] return. It names the cache and the key
// function once, for the reads ([Query.Get], [Query.Peek]) and for the
// writes that must drop what it cached ([Query.Forget],
// [Query.Invalidation]). It is safe for concurrent use.
//
// q.Get is a func(context.Context, K) (V, error), the query's own shape, so
// it can stand wherever the query did.
type Query[K, V any] struct {
	c     *tier.Cache[V]
	key   func(K) string
	tags  func(K) []string // nil: untagged
	query func(context.Context, K) (V, error)
	fix   func(V) V // nil, or WrapList's nil-to-empty
	cfg   config
}

// Wrap returns query read through c: the value of arg is cached under
// key(arg) (in c's namespace), and loaded by query on a miss, once per key
// in the process (and, with a Redis L2, in the fleet) however many callers
// miss together.
//
// A "no rows" error of the query (one matching sql.ErrNoRows, which
// pgx.ErrNoRows does, or the error given to [WithNotFound]) is cached as a
// "not found" for c's NegativeTTL. Every read that finds no row, the one
// that ran the query and the later ones answered by the cached "not found"
// on any instance, returns an error matching sql.ErrNoRows,
// pgx.ErrNoRows (any error that itself matches the sentinel) and
// [ErrNotFound] with errors.Is; the read that ran the query also matches
// (errors.Is, errors.As) the query's own error. Compare with errors.Is,
// not ==. Other errors are returned as [tier.Cache.GetOrLoad] returns them,
// and are not cached.
//
// NOTE: c's Options.IsNotFound need not know the query's error: the
// wrapper marks it. The value returned may be shared with other callers
// (it is the cached one): do not mutate it. key must return a non-empty
// key that identifies arg exactly; keys of different queries sharing c
// must not collide. Wrap panics if c, key or query is nil.
func Wrap[K, V any](c *tier.Cache[V], key func(K) string, query func(context.Context, K) (V, error), opts ...Option) *Query[K, V] {
	return newQuery(c, key, nil, query, opts)
}

// WrapTagged is [Wrap] for a value that depends on the entities that
// tags(arg) names (for example "expert:42" or "expert:42:day:2025-06-01"):
// after c.InvalidateTags with one of them (or an [Invalidation] with Tags),
// the cached value is a miss on every instance, whatever its key. tags may
// be nil.
//
// NOTE: a key must always come with the same tags: every arg that key maps
// to one key must get the same tags(arg).
func WrapTagged[K, V any](c *tier.Cache[V], key func(K) string, tags func(K) []string, query func(context.Context, K) (V, error), opts ...Option) *Query[K, V] {
	return newQuery(c, key, tags, query, opts)
}

// WrapList is [WrapTagged] for a query that returns a list. An empty list is
// cached like any other value (it is not a "not found") and is returned as
// an empty, non-nil slice whichever tier answered, so callers do not see nil
// from one tier and an empty slice from another.
func WrapList[K, E any](c *tier.Cache[[]E], key func(K) string, tags func(K) []string, query func(context.Context, K) ([]E, error), opts ...Option) *Query[K, []E] {
	q := newQuery(c, key, tags, query, opts)
	q.fix = func(l []E) []E {
		if l == nil {
			return []E{}
		}
		return l
	}
	return q
}

func newQuery[K, V any](c *tier.Cache[V], key func(K) string, tags func(K) []string, query func(context.Context, K) (V, error), opts []Option) *Query[K, V] {
	if c == nil || key == nil || query == nil {
		panic("dbcache: Wrap needs a cache, a key function and a query")
	}
	return &Query[K, V]{c: c, key: key, tags: tags, query: query, cfg: newConfig(opts)}
}

// Get returns the value of arg: from L1, else L2, else the query (see
// [Wrap] for its errors).
func (q *Query[K, V]) Get(ctx context.Context, arg K) (V, error) {
	load := func(ctx context.Context, _ string) (V, error) {
		v, err := q.query(ctx, arg)
		if err != nil && q.cfg.isNotFound(err) {
			return v, &loadNotFound{err: err}
		}
		return v, err
	}
	var (
		v   V
		err error
	)
	if q.tags != nil {
		v, err = q.c.GetOrLoadTagged(ctx, q.key(arg), q.tags(arg), load)
	} else {
		v, err = q.c.GetOrLoad(ctx, q.key(arg), load)
	}
	if err == nil {
		if q.fix != nil {
			v = q.fix(v)
		}
		return v, nil
	}
	var zero V
	if nf := (*loadNotFound)(nil); errors.As(err, &nf) {
		return zero, &notFoundError{err: nf.err, sentinel: q.cfg.notFound} // this read ran the query
	}
	if errors.Is(err, tier.ErrNotFound) {
		return zero, &notFoundError{sentinel: q.cfg.notFound} // a cached "not found"
	}
	return zero, err
}

// Peek returns the value of arg if this process's L1 holds a fresh one. It
// never blocks, never leaves the process and never runs the query; a
// cached "not found" is reported as absent.
//
// NOTE: L1 applies writes asynchronously (ristretto), so right after Get
// loaded a value, Peek may still report it absent for a moment.
func (q *Query[K, V]) Peek(arg K) (V, bool) {
	v, ok := q.c.GetIfPresent(q.key(arg))
	if ok && q.fix != nil {
		v = q.fix(v)
	}
	return v, ok
}

// Forget drops the cached values of args, on every instance (through the
// cache's invalidator). Call it after a write of those rows has committed;
// it is [Invalidate] with q.Invalidation(args...), so it ignores ctx's
// cancellation and its error matches [ErrInvalidate].
//
// NOTE: Forget drops keys only. The lists of a [WrapTagged] or [WrapList]
// query are better invalidated by tag ([Invalidation.Tags]): one tag
// reaches every list that mentions the entity, whatever its arguments.
func (q *Query[K, V]) Forget(ctx context.Context, args ...K) error {
	return Invalidate(ctx, q.Invalidation(args...))
}

// Invalidation returns what dropping the cached values of args takes, to be
// returned from a [WrapWrite] touched function or passed to [Invalidate]
// with others.
func (q *Query[K, V]) Invalidation(args ...K) Invalidation {
	keys := make([]string, len(args))
	for i, a := range args {
		keys[i] = q.key(a)
	}
	return Invalidation{Cache: q.c, Keys: keys}
}

// Key returns the key under which the value of arg is cached (before the
// cache's namespace is prefixed; see [tier.Cache.Key] for the L2 key).
func (q *Query[K, V]) Key(arg K) string { return q.key(arg) }
