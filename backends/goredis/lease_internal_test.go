package goredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// A leased write whose side key is missing when the script runs (its SET
// failed, or the key was evicted) writes nothing and releases the lease, so
// the key's next miss loads instead of waiting for a value that never comes.
func TestMoveLeased_MissingSideKeyReleasesTheLease(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	const ours = tier.LeasePrefix + "ours"
	require.NoError(t, rdb.Set(ctx, "k", ours, time.Minute).Err())
	n, err := moveLeasedScript.Run(ctx, rdb, []string{"k", "k" + sideMark + "ours"}, ours).Int()
	require.NoError(t, err)
	require.Zero(t, n, "not written")
	require.Zero(t, rdb.Exists(ctx, "k").Val(), "the marker is gone")
}

// A key's side key shares its shard: on one server (or a Sentinel's master)
// any name does; on a Cluster or Ring client only a key with a hash tag has
// one (appending keeps the tag), and the others write through
// setLeasedScript. On a Ring of two real servers, writes of both kinds land.
func TestSideKey_SameShard(t *testing.T) {
	t.Parallel()
	for key, tag := range map[string]bool{
		"tc:1:n:user:1": false, "user:{42}": true, "user:{42}:x}": true, "a{}b": false,
		"a{}b{c}": false, "{": false, "}{x}": true, "a{b": false, "": false,
	} {
		require.Equal(t, tag, hasHashTag(key), key)
	}

	one := redistest.Start(t)
	single := Must(one.Client(t), nil)
	require.Equal(t, "user:1"+sideMark+"abc", single.sideKey("user:1", tier.LeasePrefix+"abc"))

	two := redistest.Start(t)
	ring := redis.NewRing(&redis.RingOptions{
		Addrs:                 map[string]string{"a": one.Addr(), "b": two.Addr()},
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = ring.Close() })
	be := Must(ring, nil)
	require.Empty(t, be.sideKey("user:1", tier.LeasePrefix+"abc"))
	require.Equal(t, "user:{1}"+sideMark+"abc", be.sideKey("user:{1}", tier.LeasePrefix+"abc"))

	ctx := context.Background()
	const ours = tier.LeasePrefix + "ours"
	var writes []tier.LeasedWrite
	for i := range 40 { // over both shards
		for _, key := range []string{"plain:" + string(rune('a'+i)), "tagged:{" + string(rune('a'+i)) + "}"} {
			require.NoError(t, ring.Set(ctx, key, ours, time.Minute).Err())
			writes = append(writes, tier.LeasedWrite{Key: key, Lease: ours, Value: []byte("v:" + key), TTL: time.Minute})
		}
	}
	be.SetLeasedMany(ctx, writes)
	for _, w := range writes {
		require.NoError(t, w.Err, w.Key)
		require.True(t, w.Written, w.Key)
		require.Equal(t, "v:"+w.Key, ring.Get(ctx, w.Key).Val())
	}
	for _, srv := range []*redistest.Server{one, two} {
		for _, k := range srv.Client(t).Keys(ctx, "*").Val() {
			require.NotContains(t, k, sideMark, "no side key is left on %s", srv.Addr())
		}
	}
}
