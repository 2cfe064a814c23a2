package dbcache

import (
	"context"
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/tier"
)

// Cache is the part of a *tier.Cache[V] that a write needs, whatever its V.
type Cache interface {
	// Delete removes keys from the cache (and, through the cache's
	// invalidator, from the other instances' L1).
	Delete(ctx context.Context, keys ...string) error
	// InvalidateTags makes the values cached with any of tags misses (on
	// every instance, through the cache's invalidator).
	InvalidateTags(ctx context.Context, tags ...string) error
}

// Invalidation names what a write changed in one cache: the keys whose
// values it changed and the tags of the lists it changed.
// [Query.Invalidation] makes the one for a query's keys.
type Invalidation struct {
	// Cache is the cache to invalidate; nil skips the Invalidation.
	Cache Cache
	// Keys are deleted from Cache, as its Delete does.
	Keys []string
	// Tags are invalidated in Cache, as its InvalidateTags does.
	Tags []string
}

// Invalidate deletes the keys and invalidates the tags of every inv. Call it
// after the write has succeeded, and after commit for a transaction: before
// that, another reader could load the old row again and cache it.
//
// It runs every invalidation even when one fails; the failures are joined
// and wrapped in [ErrInvalidate], so errors.Is(err, ErrInvalidate) and
// errors.Is(err, tier.ErrL2) both work. It ignores ctx's cancellation (the
// write has happened; the caches must hear of it), keeping only its values;
// each cache call is bounded by that cache's L2Timeout.
func Invalidate(ctx context.Context, invs ...Invalidation) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for _, inv := range invs {
		if inv.Cache == nil {
			continue
		}
		if len(inv.Keys) > 0 {
			if err := inv.Cache.Delete(ctx, inv.Keys...); err != nil {
				errs = append(errs, err)
			}
		}
		if len(inv.Tags) > 0 {
			if err := inv.Cache.InvalidateTags(ctx, inv.Tags...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidate, errors.Join(errs...))
}

// WrapWrite returns a function of the same shape as write that runs write
// and then, only if it succeeded, invalidates what touched(arg, result)
// names (see [Invalidate]). write must have committed its transaction
// before it returns.
//
// The write's error is returned first, unchanged, and nothing is
// invalidated. If the write succeeded but an invalidation failed, the
// function returns the write's result and an error matching
// [ErrInvalidate].
func WrapWrite[K, R any](write func(context.Context, K) (R, error), touched func(K, R) []Invalidation) func(context.Context, K) (R, error) {
	return func(ctx context.Context, arg K) (R, error) {
		r, err := write(ctx, arg)
		if err != nil {
			return r, err
		}
		return r, Invalidate(ctx, touched(arg, r)...)
	}
}

var _ Cache = (*tier.Cache[int])(nil)
