package contender

import (
	"context"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sync/singleflight"

	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
)

type rueidisContender struct {
	c      rueidis.Client
	ns     string
	cfg    Config
	local  bool
	sf     singleflight.Group
	hits   atomic.Uint64
	origin Origin
}

// NewRueidis returns rueidis with client-side caching (DoCache, RESP3
// tracking; none when cfg.L1Entries is 0), used cache-aside: on a miss,
// one load per key per process (x/sync singleflight, as an application
// would add), then SET with the TTL.
//
// rueidis keeps one cache per connection, bounded by CacheSizeEachConn
// bytes of its own accounting, and opens 1 << PipelineMultiplex
// connections, keys spread over them by slot. With [SizeEntries] the
// connections' caches together hold cfg.L1Entries entries: each gets its
// share of cfg.L1Entries × [RueidisEntryBytes], and PipelineMultiplex is
// set to rueidis's own default so that the count of connections is known.
// With [SizeBytes], each connection's cache gets cfg.L1Entries ×
// [EntryCost] bytes.
func NewRueidis(cfg Config) (Contender, error) {
	opt := rueidis.ClientOption{
		InitAddress:      []string{cfg.RedisAddr},
		DisableCache:     cfg.L1Entries == 0,
		ConnWriteTimeout: cfg.RedisTimeout,
	}
	if cfg.L1Entries > 0 {
		if cfg.Sizing == SizeBytes {
			opt.CacheSizeEachConn = cfg.L1Entries * EntryCost
		} else {
			opt.PipelineMultiplex = rueidisMultiplex()
			conns := 1 << opt.PipelineMultiplex
			opt.CacheSizeEachConn = (cfg.L1Entries + conns - 1) / conns * RueidisEntryBytes(cfg.Namespace, cfg.L1Entries)
		}
	}
	if cfg.RedisDialTimeout > 0 {
		opt.Dialer.Timeout = cfg.RedisDialTimeout
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("contender: rueidis: %w", err)
	}
	return &rueidisContender{c: c, ns: cfg.Namespace + ":", cfg: cfg, local: cfg.L1Entries > 0, origin: cfg.Origin}, nil
}

// rueidisMultiplex is the PipelineMultiplex rueidis (v1.0.79) picks for a
// single node when none is given: log2(GOMAXPROCS), at most 2.
func rueidisMultiplex() int { return min(bits.Len(uint(runtime.GOMAXPROCS(0)))-1, 2) }

// rueidisEntryOverhead is what rueidis (v1.0.79, 64-bit) charges a
// client-side cache entry besides its key, command and value: in lru.go,
// entryBaseSize ((keyCache + cacheEntry + list.Element + their pointers + 2
// string headers) × 3/2 = 336) + messageStructSize (40).
const rueidisEntryOverhead = 376

// RueidisEntryBytes returns the mean size rueidis's client-side cache
// charges the entry of one profile (GET of a key under namespace ns), over
// profiles 1..n: the overhead + 2 × (len(key) + len("GET")) + the value's
// length (lru.go, Update).
func RueidisEntryBytes(ns string, n int) int {
	n = max(n, 1)
	total := 0
	for id := range int64(n) {
		enc, err := msgpack.Marshal(fixture.NewProfile(id + 1))
		if err != nil {
			panic(err) // a fixed struct always encodes
		}
		total += rueidisEntryOverhead + 2*(len(ns)+1+len(fixture.Key(id+1))+len("GET")) + len(enc)
	}
	return (total + n - 1) / n
}

func (r *rueidisContender) Get(ctx context.Context, key string, id int64) (*fixture.Profile, error) {
	full := r.ns + key
	var res rueidis.RedisResult
	if r.local {
		res = r.c.DoCache(ctx, r.c.B().Get().Key(full).Cache(), r.cfg.TTL)
	} else {
		res = r.c.Do(ctx, r.c.B().Get().Key(full).Build())
	}
	b, err := res.AsBytes()
	if err == nil {
		if res.IsCacheHit() {
			r.hits.Add(1)
		}
		p := new(fixture.Profile)
		if err := msgpack.Unmarshal(b, p); err != nil {
			return nil, err
		}
		return p, nil
	}
	if !rueidis.IsRedisNil(err) {
		// Redis is down or slow: go to the origin, as the others do.
		return r.origin(ctx, id)
	}
	v, err, _ := r.sf.Do(full, func() (any, error) {
		p, err := r.origin(ctx, id)
		if err != nil {
			return nil, err
		}
		enc, err := msgpack.Marshal(p)
		if err != nil {
			return nil, err
		}
		_ = r.c.Do(ctx, r.c.B().Set().Key(full).Value(rueidis.BinaryString(enc)).
			Ex(r.cfg.TTL).Build()).Error() // a failed write only costs a later miss
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*fixture.Profile), nil
}

func (r *rueidisContender) LocalHits() uint64 { return r.hits.Load() }

// canceled is a context that is already done: a DoCache with it answers
// from the local cache or fails before sending anything, which leaves the
// cache as it was (the pending entry it adds on a miss is cancelled).
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (r *rueidisContender) Holds(key string) bool {
	if !r.local {
		return false
	}
	res := r.c.DoCache(canceled, r.c.B().Get().Key(r.ns+key).Cache(), r.cfg.TTL)
	return res.Error() == nil && res.IsCacheHit()
}

func (r *rueidisContender) Close() error {
	r.c.Close()
	return nil
}
