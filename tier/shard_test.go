package tier_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// twoShards is an L2 over two real Redis servers, a stand-in for a Redis
// Cluster of two masters on one machine: keys whose user part starts with
// "b/" live on b, every other key (and the epoch) on a. It is a
// tier.Sharder, as goredis is over a ClusterClient.
type twoShards struct{ a, b *goredis.Backend }

var (
	_ tier.Remote  = (*twoShards)(nil)
	_ tier.Epocher = (*twoShards)(nil)
	_ tier.Sharder = (*twoShards)(nil)
)

func (s *twoShards) Shard(key string) string {
	if strings.Contains(key, ":b/") {
		return "b"
	}
	return "a"
}

func (s *twoShards) of(key string) *goredis.Backend {
	if s.Shard(key) == "b" {
		return s.b
	}
	return s.a
}

func (s *twoShards) Get(ctx context.Context, key string) ([]byte, error) {
	return s.of(key).Get(ctx, key)
}

func (s *twoShards) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		b, err := s.Get(ctx, k)
		switch {
		case err == nil:
			out[i] = b
		case !errors.Is(err, tier.ErrNotFound):
			return nil, err
		}
	}
	return out, nil
}

func (s *twoShards) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.of(key).Set(ctx, key, value, ttl)
}

func (s *twoShards) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	for _, k := range keys {
		errs = append(errs, s.of(k).Delete(ctx, k))
	}
	return errors.Join(errs...)
}

func (s *twoShards) Epoch(ctx context.Context, key string) (int64, error) { return s.a.Epoch(ctx, key) }
func (s *twoShards) NextEpoch(ctx context.Context, key string) (int64, error) {
	return s.a.NextEpoch(ctx, key)
}

// TestCache_Fault_OneShardDown (finding 3): shard b dies (for every
// instance). The Deletes of its keys fail at L2 but still reach the other
// instance through the bus at once; the breaker that opens is b's, so the
// writes of keys on the healthy shard a go on with no error, and the
// replay of b's keys does not hold back a's. When b is back, its keys are
// deleted and announced again, and nothing deleted is served.
func TestCache_Fault_OneShardDown(t *testing.T) {
	t.Parallel()
	srvA, srvB := redistest.Start(t), redistest.Start(t)
	pb := faultproxy.New(t, srvB.Addr()) // shard b, as every instance reaches it
	direct := func(srv *redistest.Server, addr string) *redis.Client { return l2Client(t, srv, addr) }
	ns := testNamespace(t)
	newInstance := func() (*tier.Cache[string], *redis.Client) {
		ra, rb := direct(srvA, srvA.Addr()), direct(srvB, pb.Addr())
		l2 := &twoShards{a: goredis.Must(ra, nil), b: goredis.Must(rb, nil)}
		return newCache(t, &tier.Options[string]{
			Namespace: ns, L2: l2, Invalidator: runBus(t, direct(srvA, srvA.Addr()), nil),
			L2Timeout: time.Second, BreakerFailures: 2, BreakerCooldown: 300 * time.Millisecond,
		}), ra
	}
	a, ra := newInstance()
	b, _ := newInstance()
	waitSubscribed(t, ra, ns, 2)
	ctx := t.Context()

	keys := []string{"a/1", "a/2", "b/1", "b/2", "b/3"}
	for _, k := range keys {
		require.NoError(t, a.Set(ctx, k, "old:"+k, 0))
		v, err := b.Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, "old:"+k, v)
	}

	pb.Cut()
	heard := b.Stats().InvalidationsReceived
	for _, k := range []string{"b/1", "b/2", "b/3"} {
		requireL2Err(t, a.Delete(ctx, k), "the shard of "+k+" is down")
	}
	require.Positive(t, a.Stats().BreakerOpens, "b's breaker opened")
	require.Eventually(t, func() bool { return b.Stats().InvalidationsReceived >= heard+3 },
		5*time.Second, time.Millisecond, "the Deletes of the dead shard's keys reached the other instance")
	for _, k := range []string{"b/1", "b/2", "b/3"} {
		_, ok := b.GetIfPresent(k)
		require.False(t, ok, "the other instance dropped %s from L1", k)
		_, err := b.Get(ctx, k)
		requireL2Err(t, err, "the other instance cannot read the dead shard either")
	}

	// The healthy shard: no error, and the other instance follows.
	require.NoError(t, a.Set(ctx, "a/1", "new:a/1", 0), "a's writes are not stopped by b's breaker")
	require.NoError(t, a.Delete(ctx, "a/2"))
	require.Eventually(t, func() bool {
		v, err := b.Get(ctx, "a/1")
		_, err2 := b.Get(ctx, "a/2")
		return err == nil && v == "new:a/1" && errors.Is(err2, tier.ErrNotFound)
	}, 5*time.Second, time.Millisecond, "the other instance serves the healthy shard's new values")
	require.Equal(t, 3, a.Stats().PendingInvalidations, "only the dead shard's keys wait for replay")

	// A Delete on the healthy shard that fails is replayed while b is still
	// down: a's keys are not held back behind b's.
	pa := faultproxy.New(t, srvA.Addr())
	rpa := direct(srvA, pa.Addr())
	c := newCache(t, &tier.Options[string]{
		Namespace: ns, L2: &twoShards{a: goredis.Must(rpa, nil), b: goredis.Must(direct(srvB, pb.Addr()), nil)},
		L2Timeout: time.Second, BreakerFailures: 100,
	})
	require.NoError(t, c.Set(ctx, "a/3", "old:a/3", 0))
	requireL2Err(t, c.Delete(ctx, "b/9"), "b is down")
	pa.Cut()
	requireL2Err(t, c.Delete(ctx, "a/3"), "a is cut for this instance")
	require.Equal(t, 2, c.Stats().PendingInvalidations)
	pa.Heal()
	require.Eventually(t, func() bool { return c.Stats().PendingInvalidations == 1 },
		5*time.Second, time.Millisecond, "a/3 was replayed while b/9 still waits")
	n, err := ra.Exists(ctx, a.Key("a/3")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a/3 is gone from L2")

	pb.Heal()
	require.Eventually(t, func() bool { return a.Stats().PendingInvalidations == 0 },
		10*time.Second, time.Millisecond, "b's keys were replayed once b was back")
	for _, k := range []string{"b/1", "b/2", "b/3"} {
		neverServes(t, a, k, "old:"+k, "this instance")
		neverServes(t, b, k, "old:"+k, "another instance")
	}
}
