package tier

import (
	"context"
	"time"
)

// Remote is the shared tier (L2). It stores opaque bytes (the codec
// envelope) under full keys that the cache has already namespaced.
// Implementations must be safe for concurrent use. backends/goredis
// implements it over go-redis.
//
// NOTE: a missing key is [ErrNotFound], never a backend sentinel (redis.Nil
// must not leak). A stored value larger than the limit the implementation
// was configured with must be refused with a [*ValueTooLargeError] without
// reading all of it. Every method must honour ctx's deadline.
type Remote interface {
	// Get returns the bytes stored under key.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetMany returns, for each key, its bytes or nil when it is missing
	// (or refused as too large), in one round trip where possible.
	GetMany(ctx context.Context, keys []string) ([][]byte, error)
	// Set stores value under key for ttl (ttl > 0).
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
}
