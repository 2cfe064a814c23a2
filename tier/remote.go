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
// reading all of it. Every method must honour ctx's deadline. The cache
// never writes into a byte slice a Remote returns, so an implementation may
// hand over memory it cannot let change (go-redis's reply string, say)
// without copying it.
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

// ValueLimiter is implemented by a [Remote] that refuses stored values
// larger than a limit of its own (backends/goredis does). The cache takes
// that limit as its Options.MaxValueBytes when that is 0, and New refuses a
// larger Options.MaxValueBytes: a value the cache would write, every reader
// would refuse, and reload.
type ValueLimiter interface {
	// MaxValueBytes returns the largest value, in bytes, that Get and the
	// other reads hand over.
	MaxValueBytes() int
}

// LeasePrefix starts every lease marker a [Leaser] stores under a key. A
// [Remote.Get] may return such a marker: the cache recognises it and never
// decodes it.
const LeasePrefix = "\x00tiercache-lease:"

// Leaser is implemented by a [Remote] that can fence writes with leases, in
// the manner of memcache leases (Nishtala et al., NSDI 2013): the instance
// that misses stores a lease marker under the key, loads, and writes its
// value only if its marker is still there. A Delete or Set in between
// removes the marker, so a load that read the origin before the
// invalidation can never write its old value afterwards, and the other
// instances that see the marker wait for the value instead of loading too.
type Leaser interface {
	// Lease stores the marker lease under key for ttl if key holds nothing
	// (or, when replace is true, anything but another lease: then the
	// marker is stored as lease + "\n" + the old value, so that the other
	// instances can still use it as a stale value while the load runs) and
	// returns nil; otherwise it returns what key holds (a value or another
	// lease), refusing a value over the size limit as Get does. Another
	// lease that cannot be live (no TTL, or far more left than ttl) may be
	// refused as [ErrCorrupt]: the cache deletes it and takes the lease,
	// instead of waiting LeaseWait on every miss for a load that is not
	// running. It is one round trip (goredis's: two when it finds another
	// lease, whose TTL it then reads).
	Lease(ctx context.Context, key, lease string, ttl time.Duration, replace bool) ([]byte, error)
	// SetLeased stores value under key for ttl only if key still holds the
	// marker lease (alone, or followed by "\n" and a kept value), and
	// reports whether it did. It is one round trip.
	SetLeased(ctx context.Context, key, lease string, value []byte, ttl time.Duration) (bool, error)
	// ReleaseLease gives back the lease of a load that failed, if key still
	// holds it: the value kept beside the marker is put back for keep (when
	// keep > 0), else the key is deleted. It is one round trip.
	ReleaseLease(ctx context.Context, key, lease string, keep time.Duration) error
}

// LeasedWrite is one [Leaser.SetLeased] sent by a [WriteCarrier] with
// other commands; the carrier sets Written and Err.
type LeasedWrite struct {
	Key, Lease string
	Value      []byte
	TTL        time.Duration

	Written bool  // the key still held the marker, and now holds Value
	Err     error // the write failed (Written is false)
}

// LeaseRequest is one [Leaser.Lease] (replace false) sent by a
// [WriteCarrier] with other commands; the carrier sets Cur and Err as Lease
// returns them (Cur nil: the lease is taken).
type LeaseRequest struct {
	Key, Lease string
	TTL        time.Duration

	Cur []byte
	Err error
}

// WriteCarrier is implemented by a [Leaser] that can send several leases
// and leased writes in one round trip. The cache answers its callers before
// it writes L2; with a WriteCarrier it queues that write and the next
// miss's lease round trip to the same shard carries it (or, when no miss
// comes within a fraction of a millisecond, SetLeasedMany sends the
// queue), and the misses of one shard that come while a lease round trip
// is on its way share the next one, so that a steady stream of misses costs
// less than one round trip each.
type WriteCarrier interface {
	// LeaseMany is Lease (replace false) of each of leases, all on one
	// shard, with writes sent in the same round trip, before the leases'
	// commands (a second round trip, as Lease's, may follow for the leases
	// that found another's marker). Each lease's and each write's outcome
	// is set in it.
	LeaseMany(ctx context.Context, leases []LeaseRequest, writes []LeasedWrite)
	// SetLeasedMany sends writes, all on one shard, in one round trip where
	// possible, and sets each one's outcome.
	SetLeasedMany(ctx context.Context, writes []LeasedWrite)
}

// TagStore is implemented by a [Remote] that keeps, per tag, the last time
// it was invalidated, so that every instance (including one that starts
// later) can tell a tagged L2 value from before an invalidation.
type TagStore interface {
	// GetTagged is Get plus the invalidation time of each tag key (unix
	// nanos, 0 when never), in one round trip.
	GetTagged(ctx context.Context, key string, tagKeys []string) ([]byte, []int64, error)
	// TouchTags records at as the invalidation time of each tag key (keeping
	// a later one), for ttl.
	TouchTags(ctx context.Context, tagKeys []string, at int64, ttl time.Duration) error
}

// Epocher is implemented by a [Remote] that keeps a counter per namespace,
// so a whole namespace can be cleared without FLUSHALL or KEYS: every key
// carries the namespace's epoch, and clearing moves to the next epoch (the
// old keys are never read again and expire with their TTL).
type Epocher interface {
	// Epoch returns the counter under key (0 when it does not exist).
	Epoch(ctx context.Context, key string) (int64, error)
	// NextEpoch increments the counter under key and returns its new value.
	NextEpoch(ctx context.Context, key string) (int64, error)
}

// EpochRaiser is implemented by an [Epocher] that can move a namespace's
// counter past a value it may no longer hold: after a failover or a restart
// of L2, the counter can be lower than an epoch the instances have used
// (the increments were lost), and counting up from it would name keys of
// that epoch again.
type EpochRaiser interface {
	// RaiseEpoch atomically sets the counter under key to max(counter,
	// known)+1, unless it is already above known (someone moved past known:
	// it is left as it is), and returns the counter's value.
	RaiseEpoch(ctx context.Context, key string, known int64) (int64, error)
}

// Sharder is implemented by a [Remote] whose keys live on several
// independent servers (a Redis Cluster's masters). The cache keeps one
// circuit breaker per shard, and replays invalidations per shard, so that
// a dead shard never stops or delays the calls to the others.
type Sharder interface {
	// Shard names the shard that holds the full L2 key now (for example
	// the address of the master serving its slot); "" means the only one.
	// It is called on every L2 call and must not block: answer from what
	// is known (it may change after a failover).
	//
	// NOTE: with a [Lineager] L2, a shard name first seen after the cache's
	// first lineage check (a replica promoted in place of a dead master) is
	// not used until the next check, which the cache runs at once (within
	// 100 ms): a master that may have lost acknowledged writes is never read
	// before the namespace has moved past them.
	Shard(key string) string
}

// Lineager is implemented by a [Remote] that can tell when it may have lost
// writes it acknowledged. Redis replicates asynchronously: a failover (or a
// restart without persistence) can undo acknowledged writes, and an undone
// Delete leaves the old bytes in L2 for every instance to read. When the
// token changes, the cache stops trusting its L1 and moves the namespace to
// its next epoch (with [EpochRaiser], if L2 has it), so that no key written
// before the change is read again.
type Lineager interface {
	// Lineage returns a token that changes whenever writes L2 acknowledged
	// may have been lost (for Redis: each master's run_id and replication
	// id). It is called every Options.LineageInterval, with L2Timeout.
	Lineage(ctx context.Context) (string, error)
}
