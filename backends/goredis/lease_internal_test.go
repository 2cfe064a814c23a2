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
// failed, or went to another server behind a proxy) writes nothing and
// releases the lease, so the key's next miss loads instead of waiting for a
// value that never comes; the write reports an error that says why.
func TestMoveLeased_MissingSideKeyReleasesTheLease(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	const ours = tier.LeasePrefix + "ours"
	require.NoError(t, rdb.Set(ctx, "k", ours, time.Minute).Err())
	n, err := moveLeasedScript.Run(ctx, rdb, []string{"k", "k" + sideMark + "ours"}, ours, 60000).Int()
	require.NoError(t, err)
	require.Equal(t, -1, n, "not written: no side key")
	require.Zero(t, rdb.Exists(ctx, "k").Val(), "the marker is gone")

	b := Must(rdb, nil)
	cmd := redis.NewCmd(ctx)
	cmd.SetVal(int64(-1))
	w := tier.LeasedWrite{Key: "k", Lease: ours}
	b.setLeasedResult(&w, sentWrite{side: redis.NewStatusResult("OK", nil), script: cmd})
	require.False(t, w.Written)
	require.ErrorIs(t, w.Err, errSideKeyMissing)
}

// A write that fails leaves no side key behind: a key of another type (the
// script's GETRANGE fails), a user that may not RENAME. One whose script
// never runs leaves it for sideKeyTTL at most.
func TestMoveLeased_FailureLeavesNoSideKey(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const ours = tier.LeasePrefix + "ours"
	b := Must(rdb, nil)

	require.NoError(t, rdb.LPush(ctx, "list", "x").Err())
	w := []tier.LeasedWrite{{Key: "list", Lease: ours, Value: []byte("v"), TTL: time.Minute}}
	b.SetLeasedMany(ctx, w)
	require.ErrorIs(t, w[0].Err, tier.ErrCorrupt, "WRONGTYPE")
	require.Zero(t, rdb.Exists(ctx, b.sideKey("list", ours)).Val())

	require.NoError(t, rdb.Do(ctx, "ACL", "SETUSER", "norename", "on", ">pw", "~*", "+@all", "-rename").Err())
	t.Cleanup(func() { rdb.Do(ctx, "ACL", "DELUSER", "norename") })
	o := srv.Options()
	o.Username, o.Password = "norename", "pw"
	limited := redis.NewClient(o)
	t.Cleanup(func() { _ = limited.Close() })
	require.NoError(t, rdb.Set(ctx, "held", ours, time.Minute).Err())
	w = []tier.LeasedWrite{{Key: "held", Lease: ours, Value: []byte("v"), TTL: time.Minute}}
	Must(limited, nil).SetLeasedMany(ctx, w)
	require.ErrorContains(t, w[0].Err, "can't run this command")
	require.Zero(t, rdb.Exists(ctx, b.sideKey("held", ours)).Val())
	require.Equal(t, ours, rdb.Get(ctx, "held").Val(), "the marker stays for the lease's TTL")

	// A user that may not run scripts: the SET alone runs, as when the
	// connection breaks before the script.
	require.NoError(t, rdb.Do(ctx, "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "+@all", "-evalsha", "-eval").Err())
	t.Cleanup(func() { rdb.Do(ctx, "ACL", "DELUSER", "noscript") })
	o.Username = "noscript"
	noScript := redis.NewClient(o)
	t.Cleanup(func() { _ = noScript.Close() })
	w = []tier.LeasedWrite{{Key: "alone", Lease: ours, Value: []byte("v"), TTL: time.Hour}}
	Must(noScript, nil).SetLeasedMany(ctx, w)
	require.Error(t, w[0].Err)
	left := rdb.PTTL(ctx, b.sideKey("alone", ours)).Val()
	require.Positive(t, left)
	require.LessOrEqual(t, left, sideKeyTTL, "an orphan side key expires soon, whatever the value's TTL")
}

// With Options.ValueThroughScript no write uses a side key.
func TestSideKey_ValueThroughScript(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	b := Must(rdb, &Options{ValueThroughScript: true})
	require.Empty(t, b.sideKey("user:{1}", tier.LeasePrefix+"abc"))
	ctx := context.Background()
	const ours = tier.LeasePrefix + "ours"
	require.NoError(t, rdb.Set(ctx, "k", ours, time.Minute).Err())
	ok, err := b.SetLeased(ctx, "k", ours, []byte("v"), time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v", rdb.Get(ctx, "k").Val())
	require.Equal(t, []string{"k"}, rdb.Keys(ctx, "*").Val())
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
