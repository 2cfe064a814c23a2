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
	// to its own unit as Sizing says); 0 turns the local tier off where
	// the library allows it.
	L1Entries int
	// Sizing says how L1Entries becomes each library's unit. Default
	// (zero): [SizeEntries].
	Sizing Sizing
	// TTL is the time to live of every value, in both tiers.
	TTL time.Duration
	// Origin loads a missing value.
	Origin Origin
	// RedisDialTimeout and RedisTimeout bound Redis calls (go-redis and
	// rueidis defaults when zero).
	RedisDialTimeout time.Duration
	RedisTimeout     time.Duration
}

// EntryCost is about the L1 cost, in bytes, that tiercache's default cost
// function gives one profile (encoded size + key + 128: 10k × EntryCost
// held 9,834 of the Zipf workload's entries, 732 B each): [SizeBytes]
// gives the cost-bounded local tiers L1Entries × EntryCost bytes.
const EntryCost = 720

// Sizing is how [Config.L1Entries] becomes the bound of each library's
// local tier, which each library counts in its own unit: go-redis/cache's
// TinyLFU in entries, tiercache's L1 (ristretto) in the cost its Cost
// function gives an entry (by default bytes: encoded size + key + 128),
// rueidis's client-side cache in bytes of its own accounting (about 1 kB
// for a profile), per connection, with 1, 2 or 4 connections depending on
// GOMAXPROCS.
type Sizing int

const (
	// SizeEntries gives every local tier room for the same number of
	// entries, L1Entries: go-redis/cache's TinyLFU holds L1Entries;
	// tiercache's L1 is bounded by count (an entry costs 1, L1 bounded by
	// L1Entries, ten admission counters per entry as ristretto
	// recommends); rueidis's cache of each connection gets its share of
	// L1Entries × the size rueidis charges one profile entry
	// ([RueidisEntryBytes]). The heap each then uses differs (tiercache
	// keeps decoded values, the peers encoded bytes): BenchmarkL1Footprint
	// measures it.
	SizeEntries Sizing = iota
	// SizeBytes is the sizing used until 2026-12-06: go-redis/cache's
	// TinyLFU holds L1Entries entries; tiercache's L1 (default cost) and
	// each rueidis connection's cache get L1Entries × [EntryCost] bytes.
	// It is not fair: rueidis charges a profile entry about 1 kB, not
	// 720 B, but has one cache per connection (two at GOMAXPROCS 2 and 3,
	// four from 4), so it holds about 0.7, 1.4 or 2.8 × L1Entries entries.
	SizeBytes
)

// String returns the name used by the -sizing flags: "entries" or
// "bytes".
func (s Sizing) String() string {
	if s == SizeBytes {
		return "bytes"
	}
	return "entries"
}

// ParseSizing returns the Sizing called name ("entries" or "bytes").
func ParseSizing(name string) (Sizing, error) {
	switch name {
	case "entries":
		return SizeEntries, nil
	case "bytes":
		return SizeBytes, nil
	}
	return 0, fmt.Errorf("contender: unknown sizing %q (want entries or bytes)", name)
}

// Holder is implemented by every contender: Holds reports whether the
// local tier holds key now, without loading it or counting a hit.
// BenchmarkL1Footprint and loadgen count the entries a local tier holds
// with it.
type Holder interface {
	Holds(key string) bool
}

// Held returns how many of keys c's local tier holds (0 if c is not a
// [Holder]).
func Held(c Contender, keys []string) int {
	h, ok := c.(Holder)
	if !ok {
		return 0
	}
	n := 0
	for _, k := range keys {
		if h.Holds(k) {
			n++
		}
	}
	return n
}

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
