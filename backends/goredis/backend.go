package goredis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redisconf"
	"github.com/tiercache/tiercache/tier"
)

// DefaultMaxValueBytes is the default of Options.MaxValueBytes: 1 MiB (the
// same as a tier cache's without a limiting L2).
const DefaultMaxValueBytes = 1 << 20

// Options configures a [Backend]. New copies it. A nil *Options means the
// defaults.
type Options struct {
	// MaxValueBytes is the largest value Get hands over; larger ones are
	// refused with a *tier.ValueTooLargeError after reading at most 65
	// bytes more (a lease marker keeping a value of the limit is that much
	// longer). It is the one place to set the limit: a cache over this
	// Backend takes it as its tier.Options.MaxValueBytes (left 0), and
	// tier.New refuses a larger one (see tier.ValueLimiter). Default:
	// 1 MiB.
	MaxValueBytes int
	// WaitReplicas, when > 0, makes every write that an undone copy would
	// turn into a stale read (Set, Delete, the tag times, the epoch moves)
	// wait until that many replicas have acknowledged it (WAIT, on the
	// master's connection, within the call's deadline); fewer is an error
	// matching [ErrNotReplicated] (and tier.ErrL2 for the caller), and the
	// cache keeps the write for replay. Not for a Ring client.
	//
	// Default: 0, off. A failover can undo writes Redis acknowledged
	// (replication is asynchronous); the cache already covers that by
	// noticing the new master (tier.Lineager) and moving to a new epoch, at
	// the cost of one namespace-wide miss per failover, and WAIT cannot make
	// Redis consistent anyway (a replica that missed the write can still be
	// promoted). WaitReplicas narrows what is left: reads between the
	// failover and the cache noticing it (tier.Options.LineageInterval)
	// find fewer undone writes. It costs a replica round trip per write.
	WaitReplicas int
	// ValueThroughScript makes a load's fenced write send its value
	// through the Lua script that checks the lease, as on a Cluster for a
	// key without a hash tag, instead of storing it under a side key (the
	// key's name, "\x00tiercache-value:" and the lease) that the script
	// renames over the key. Set it for a client behind a proxy that spreads
	// keys over servers by name (twemproxy, Envoy), where the side key may
	// land on another server: the writes would otherwise fail with an error
	// that says so. The side key costs Redis about a third less CPU per
	// miss (benchmarks/RESULTS.md). Default: false.
	ValueThroughScript bool
}

// Backend is a tier.Remote over a go-redis client. It is safe for
// concurrent use.
type Backend struct {
	c       redis.UniversalClient
	cluster *redis.ClusterClient // c, if it is a Cluster client
	sharded bool                 // c spreads keys over shards by slot: a Cluster or Ring client
	// throughScript is Options.ValueThroughScript.
	throughScript bool
	max           int
	wait          int // Options.WaitReplicas
	// readEndArg is readEnd boxed once: GETRANGE's last argument, which
	// go-redis would otherwise box (allocate) on every read.
	readEndArg any

	topo        *redisconf.Topology // asks cluster to reload its slot map after connection errors
	slotsLoaded atomic.Bool         // cluster has answered a slot lookup: lookups no longer block
}

var _ tier.Remote = (*Backend)(nil)

// ErrContextTimeouts is returned by [New] for a client that ignores
// context deadlines.
var ErrContextTimeouts = errors.New("goredis: the client ignores context deadlines: set ContextTimeoutEnabled: true in its options, or a slow or stopped Redis blocks callers for the client's ReadTimeout (3 s by default) instead of tier's L2Timeout")

// New returns a Backend over client, which stays the caller's to close.
//
// The client must have ContextTimeoutEnabled set (in redis.Options,
// ClusterOptions, RingOptions or FailoverOptions): without it go-redis
// bounds socket reads by its ReadTimeout only, and the cache could not keep
// its promise that a caller never waits on Redis longer than L2Timeout.
// New refuses such a client with [ErrContextTimeouts].
func New(client redis.UniversalClient, o *Options) (*Backend, error) {
	if client == nil {
		return nil, fmt.Errorf("goredis: %w: nil client", tier.ErrInvalidOptions)
	}
	if !redisconf.ContextTimeouts(client) {
		return nil, ErrContextTimeouts
	}
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.MaxValueBytes < 0 {
		return nil, fmt.Errorf("goredis: %w: negative MaxValueBytes", tier.ErrInvalidOptions)
	}
	if opts.MaxValueBytes == 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.WaitReplicas < 0 {
		return nil, fmt.Errorf("goredis: %w: negative WaitReplicas", tier.ErrInvalidOptions)
	}
	if _, ring := client.(*redis.Ring); ring && opts.WaitReplicas > 0 {
		return nil, fmt.Errorf("goredis: %w: WaitReplicas with a Ring client", tier.ErrInvalidOptions)
	}
	b := &Backend{c: client, max: opts.MaxValueBytes, wait: opts.WaitReplicas}
	b.readEndArg = b.readEnd()
	b.cluster, _ = client.(*redis.ClusterClient)
	_, ring := client.(*redis.Ring)
	b.sharded = b.cluster != nil || ring
	b.throughScript = opts.ValueThroughScript
	b.topo = redisconf.NewTopology(client)
	return b, nil
}

// Must is like [New] but panics on an error.
func Must(client redis.UniversalClient, o *Options) *Backend {
	b, err := New(client, o)
	if err != nil {
		panic(err)
	}
	return b
}

// MaxValueBytes implements tier.ValueLimiter: it returns
// Options.MaxValueBytes.
func (b *Backend) MaxValueBytes() int { return b.max }

var _ tier.ValueLimiter = (*Backend)(nil)

// Client returns the client the Backend was created with.
func (b *Backend) Client() redis.UniversalClient { return b.c }

// WaitReplicas returns Options.WaitReplicas: when it is 0, a [Backend.Delete]
// is one DEL per key on Client and nothing more, so whoever shares the
// client may send those DELs for it (see the invalidate package, which
// sends them with the invalidation's PUBLISH).
func (b *Backend) WaitReplicas() int { return b.wait }

// DeleteError returns err, the error of DEL commands sent on Client for
// keys of b, as [Backend.Delete] would have returned it (and, on Cluster,
// reported to the Backend's slot-map follower as Delete's own errors are).
func (b *Backend) DeleteError(err error) error { return b.translate("delete", err) }

// Get returns the bytes under key, [tier.ErrNotFound] when there are none,
// and a *tier.ValueTooLargeError for a value over the limit.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	cmd := redis.NewStringCmd(ctx, "getrange", key, 0, b.readEndArg)
	_ = b.c.Process(ctx, cmd)
	return b.result(cmd.Result())
}

// leaseSlack is how much longer than the value limit a lease marker with a
// kept value may be: the marker (tier.LeasePrefix and two base-36 numbers)
// and a newline before a value of up to the limit.
const leaseSlack = 64

// readEnd is the last byte offset a read asks for: one past what may be
// accepted, so that a longer value is seen to be too large without being
// read whole.
func (b *Backend) readEnd() int64 { return int64(b.max + leaseSlack) }

func (b *Backend) result(s string, err error) ([]byte, error) {
	switch {
	case err != nil:
		return nil, b.translate("get", err)
	case s == "":
		return nil, tier.ErrNotFound
	case len(s) > b.max && (len(s) > b.max+leaseSlack || !strings.HasPrefix(s, tier.LeasePrefix)):
		return nil, &tier.ValueTooLargeError{Size: len(s), Limit: b.max}
	}
	// The reply's own memory, without a copy: tier.Remote's contract is
	// that the cache never writes into the bytes Get returns.
	return unsafe.Slice(unsafe.StringData(s), len(s)), nil
}

// GetMany returns the bytes of each key, nil for a missing or refused one,
// in one pipelined round trip.
func (b *Backend) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.GetRange(ctx, k, 0, b.readEnd())
		}
		return nil
	})
	out := make([][]byte, len(keys))
	for i, cmd := range cmds {
		v, cerr := b.result(cmd.Result())
		switch {
		case cerr == nil:
			out[i] = v
		case errors.Is(cerr, tier.ErrNotFound), errors.Is(cerr, tier.ErrValueTooLarge), errors.Is(cerr, tier.ErrCorrupt):
		default:
			return nil, cerr
		}
	}
	if err != nil && !isWrongType(err) {
		return nil, b.translate("get many", err)
	}
	return out, nil
}

// Set stores value under key for ttl.
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if b.wait > 0 {
		return b.replicated(ctx, "set", []string{key}, func(p redis.Pipeliner, keys []string) {
			p.Set(ctx, keys[0], value, ttl)
		})
	}
	return b.translate("set", b.c.Set(ctx, key, value, ttl).Err())
}

// Delete removes keys, one pipelined command per key.
func (b *Backend) Delete(ctx context.Context, keys ...string) error {
	switch {
	case len(keys) == 0:
		return nil
	case b.wait > 0:
		return b.replicated(ctx, "delete", keys, func(p redis.Pipeliner, keys []string) {
			for _, k := range keys {
				p.Del(ctx, k)
			}
		})
	case len(keys) == 1:
		return b.translate("delete", b.c.Del(ctx, keys[0]).Err())
	}
	_, err := b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	return b.translate("delete", err)
}

// translate is the package's translate for an error of b's client, which
// it first reports to the topology follower (see [Backend.topology]).
func (b *Backend) translate(op string, err error) error {
	if err != nil {
		b.topology(err)
	}
	return translate(op, err)
}

// translate wraps a go-redis error so that no backend sentinel leaks:
// redis.Nil becomes tier.ErrNotFound and WRONGTYPE becomes tier.ErrCorrupt.
func translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return tier.ErrNotFound
	case isWrongType(err):
		return fmt.Errorf("goredis: %s: %w: %s", op, tier.ErrCorrupt, err.Error())
	}
	return fmt.Errorf("goredis: %s: %w", op, err)
}

func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE")
}
