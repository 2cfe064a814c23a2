// Package contender puts tiercache and its peers behind one small interface
// so that the workload benchmarks (Zipf, stampede, miss + load, Redis down)
// and cmd/loadgen drive them identically. The micro-benchmarks of L1 and L2
// hits call the libraries directly instead, without this indirection.
//
// Every contender reads the same [fixture.Profile] through the same origin
// and returns a decoded *fixture.Profile: go-redis/cache and rueidis keep
// bytes in their local caches and decode on every hit; tiercache keeps the
// decoded value.
package contender

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
)

// Origin loads the profile of user id (the database).
type Origin func(ctx context.Context, id int64) (*fixture.Profile, error)

// Contender is one library configured as a read-through cache of profiles.
// Implementations are safe for concurrent use.
type Contender interface {
	// Get returns the profile under key (whose id is id), loading it from
	// the origin on a miss and caching it.
	Get(ctx context.Context, key string, id int64) (*fixture.Profile, error)
	// LocalHits returns how many Gets the in-process tier answered.
	LocalHits() uint64
	// Close releases the contender and its Redis client.
	Close() error
}

// Config configures a [Contender]. Every field but L1Entries is required.
type Config struct {
	// RedisAddr is the shared Redis.
	RedisAddr string
	// Namespace prefixes every Redis key, so runs and instances sharing a
	// Redis do not see each other's values unless they share it.
	Namespace string
	// L1Entries sizes the local tier in entries (each library converts it
	// to its own unit, see [EntryCost]); 0 turns the local tier off where
	// the library allows it.
	L1Entries int
	// TTL is the time to live of every value, in both tiers.
	TTL time.Duration
	// Origin loads a missing value.
	Origin Origin
	// RedisDialTimeout and RedisTimeout bound Redis calls (go-redis and
	// rueidis defaults when zero).
	RedisDialTimeout time.Duration
	RedisTimeout     time.Duration
}

// EntryCost is the L1 cost, in bytes, that tiercache's default cost
// function gives one profile (encoded size + key + 128): L1 sizes in bytes
// are L1Entries × EntryCost.
const EntryCost = 720

// Names of the contenders, as used in benchmark names and by loadgen.
const (
	Tiercache    = "tiercache"
	GoRedisCache = "go-redis-cache"
	Rueidis      = "rueidis"
)

// Names lists every contender, tiercache first.
var Names = []string{Tiercache, GoRedisCache, Rueidis}

// New returns the contender called name.
func New(name string, cfg Config) (Contender, error) {
	switch name {
	case Tiercache:
		return NewTiercache(cfg)
	case GoRedisCache:
		return NewGoRedisCache(cfg)
	case Rueidis:
		return NewRueidis(cfg)
	}
	return nil, fmt.Errorf("contender: unknown %q", name)
}

// CountingOrigin wraps o and counts its calls.
type CountingOrigin struct {
	o     Origin
	calls atomic.Int64
}

// NewCountingOrigin returns an Origin that counts its calls of o.
func NewCountingOrigin(o Origin) *CountingOrigin { return &CountingOrigin{o: o} }

// Load is the counted origin.
func (c *CountingOrigin) Load(ctx context.Context, id int64) (*fixture.Profile, error) {
	c.calls.Add(1)
	return c.o(ctx, id)
}

// Calls returns how many times Load was called.
func (c *CountingOrigin) Calls() int64 { return c.calls.Load() }

// MemoryOrigin builds the profile in memory, optionally after a delay (a
// stand-in for a query when no database is wanted).
func MemoryOrigin(delay time.Duration) Origin {
	return func(ctx context.Context, id int64) (*fixture.Profile, error) {
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return fixture.NewProfile(id), nil
	}
}
