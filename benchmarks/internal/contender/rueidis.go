package contender

import (
	"context"
	"fmt"
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
// tracking) of about cfg.L1Entries entries (cfg.L1Entries × EntryCost bytes
// per connection; none when 0), used cache-aside: on a miss, one load per
// key per process (x/sync singleflight, as an application would add), then
// SET with the TTL.
func NewRueidis(cfg Config) (Contender, error) {
	opt := rueidis.ClientOption{
		InitAddress:       []string{cfg.RedisAddr},
		DisableCache:      cfg.L1Entries == 0,
		CacheSizeEachConn: cfg.L1Entries * EntryCost,
		ConnWriteTimeout:  cfg.RedisTimeout,
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

func (r *rueidisContender) Close() error {
	r.c.Close()
	return nil
}
