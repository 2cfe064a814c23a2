package dbcache

// TODO(shim): delete this file once tier.Cache has GetOrLoadTagged and
// InvalidateTags, and call them directly.

import (
	"context"

	"github.com/tiercache/tiercache/tier"
)

type taggedCache[V any] interface {
	GetOrLoadTagged(ctx context.Context, key string, tags []string, load tier.LoadFunc[V]) (V, error)
}

type tagInvalidator interface {
	InvalidateTags(ctx context.Context, tags ...string) error
}

func getOrLoadTagged[V any](ctx context.Context, c *tier.Cache[V], key string, tags []string, load tier.LoadFunc[V]) (V, error) {
	if tc, ok := any(c).(taggedCache[V]); ok {
		return tc.GetOrLoadTagged(ctx, key, tags, load)
	}
	return c.GetOrLoad(ctx, key, load)
}

func invalidateTags(ctx context.Context, c Cache, tags []string) error {
	if ti, ok := c.(tagInvalidator); ok {
		return ti.InvalidateTags(ctx, tags...)
	}
	return nil
}
