package ristretto

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// DefaultMaxCost is the default bound of a [Cache], in bytes of cost: 64 MiB.
const DefaultMaxCost = 64 << 20

// ErrInvalidOptions is returned by [New] for options that cannot work.
var ErrInvalidOptions = errors.New("ristretto: invalid options")

// Options configures a [Cache]. New copies it; later changes have no effect.
// A nil *Options is valid and means all defaults.
type Options struct {
	// MaxCost bounds the sum of the costs of the stored entries. The cost of
	// an entry is what the caller passes to Set, in bytes by convention.
	// Default: DefaultMaxCost (64 MiB).
	MaxCost int64
	// AvgCost is the expected average cost of one entry; it sizes the
	// admission counters (ten per expected entry, as ristretto recommends).
	// Default: 1024.
	AvgCost int64
	// BufferItems is ristretto's Get buffer size. Default: 64.
	BufferItems int64
	// UseTTL makes Set's ttl an expiry that ristretto enforces. By default
	// it is ignored and entries leave by eviction only: tier checks expiry
	// itself, and ristretto's own check reads the clock on every Get of an
	// entry with a TTL (about half the cost of a Get where the clock is
	// slow, as on many virtual machines).
	UseTTL bool
}

// Cache is a cost-bounded in-process store of values of type T, safe for
// concurrent use. Its zero value is not usable; call [New].
type Cache[T any] struct {
	c      *ristretto.Cache[string, T]
	useTTL bool
	// evicted counts ristretto's evictions (OnEvict: for room, or expired);
	// its own KeysEvicted also counts Deletes. closing stops the count when
	// Close empties the store.
	evicted atomic.Uint64
	closing atomic.Bool

	closeOnce sync.Once
}

// New returns a Cache configured by o (nil means defaults).
func New[T any](o *Options) (*Cache[T], error) {
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.MaxCost < 0 || opts.AvgCost < 0 || opts.BufferItems < 0 {
		return nil, fmt.Errorf("%w: negative size", ErrInvalidOptions)
	}
	if opts.MaxCost == 0 {
		opts.MaxCost = DefaultMaxCost
	}
	if opts.AvgCost == 0 {
		opts.AvgCost = 1024
	}
	if opts.BufferItems == 0 {
		opts.BufferItems = 64
	}
	counters := max(10*opts.MaxCost/opts.AvgCost, 1000)
	lc := &Cache[T]{useTTL: opts.UseTTL}
	c, err := ristretto.NewCache(&ristretto.Config[string, T]{
		OnEvict: func(*ristretto.Item[T]) {
			if !lc.closing.Load() {
				lc.evicted.Add(1)
			}
		},
		NumCounters:        counters,
		MaxCost:            opts.MaxCost,
		BufferItems:        opts.BufferItems,
		Metrics:            true,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto: new: %w", err)
	}
	lc.c = c
	return lc, nil
}

// Must is like [New] but panics on invalid options.
func Must[T any](o *Options) *Cache[T] {
	c, err := New[T](o)
	if err != nil {
		panic(err)
	}
	return c
}

// Get returns the value stored under key, if any and not expired. It does
// not allocate.
func (c *Cache[T]) Get(key string) (T, bool) {
	return c.c.Get(key)
}

// Set stores v under key with the given cost and, with Options.UseTTL,
// time to live (ttl <= 0 means no expiry). It reports whether the write was
// accepted; an accepted write may still be refused later by the admission
// policy, and becomes visible to Get asynchronously (see [Cache.Wait]).
// Replacing an existing key is visible at once.
func (c *Cache[T]) Set(key string, v T, cost int64, ttl time.Duration) bool {
	if ttl < 0 || !c.useTTL {
		ttl = 0
	}
	return c.c.SetWithTTL(key, v, cost, ttl)
}

// Delete removes key. The removal is visible at once, and it is ordered after
// every Set of the same key that was accepted before it.
func (c *Cache[T]) Delete(key string) {
	c.c.Del(key)
}

// Wait blocks until every Set accepted before the call has been applied.
func (c *Cache[T]) Wait() {
	c.c.Wait()
}

// Close stops the cache's goroutines and drops its contents. It is idempotent.
func (c *Cache[T]) Close() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.c.Close()
	})
}

// Hits returns how many Gets found a value since the cache was created.
func (c *Cache[T]) Hits() uint64 { return c.c.Metrics.Hits() }

// Cost returns the sum of the costs of the stored entries.
func (c *Cache[T]) Cost() int64 { return c.c.MaxCost() - c.c.RemainingCost() }

// SetsDropped returns how many Sets were dropped because the write buffer
// was full.
func (c *Cache[T]) SetsDropped() uint64 { return c.c.Metrics.SetsDropped() }

// SetsRejected returns how many Sets the admission policy refused.
func (c *Cache[T]) SetsRejected() uint64 { return c.c.Metrics.SetsRejected() }

// Evicted returns how many entries were evicted to make room (or, with
// UseTTL, because they expired); Deletes are not evictions.
func (c *Cache[T]) Evicted() uint64 { return c.evicted.Load() }
