package goredis_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// The lineage token stays the same while the server does, and changes
// when it restarts (a new run_id: its writes may be gone).
func TestBackend_Lineage_ChangesOnRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	be := goredis.Must(srv.Client(t), nil)
	ctx := t.Context()
	tok, err := be.Lineage(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, tok)
	again, err := be.Lineage(ctx)
	require.NoError(t, err)
	require.Equal(t, tok, again)

	srv.Restart()
	require.Eventually(t, func() bool {
		next, err := be.Lineage(ctx)
		return err == nil && next != tok
	}, 10*time.Second, 10*time.Millisecond, "the token changed with the restart")
}

// A replica that is promoted (REPLICAOF NO ONE) has another token than the
// master it followed.
func TestBackend_Lineage_ChangesOnPromotion(t *testing.T) {
	t.Parallel()
	primary, replica := startReplicated(t)
	ctx := t.Context()
	tokP, err := goredis.Must(primary.Client(t), nil).Lineage(ctx)
	require.NoError(t, err)
	rb := goredis.Must(replica.Client(t), nil)
	before, err := rb.Lineage(ctx)
	require.NoError(t, err)
	require.NoError(t, replica.Client(t).Do(ctx, "REPLICAOF", "NO", "ONE").Err())
	after, err := rb.Lineage(ctx)
	require.NoError(t, err)
	require.NotEqual(t, before, after, "the promoted replica's replication id changed")
	require.NotEqual(t, tokP, after)
}

func TestBackend_RaiseEpoch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	be := goredis.Must(rdb, nil)
	ctx := t.Context()
	tests := []struct {
		name    string
		counter string // "" for none
		known   int64
		want    int64
	}{
		{name: "no counter", known: 0, want: 1},
		{name: "no counter, known 4 (lost with a restart)", known: 4, want: 5},
		{name: "at known", counter: "5", known: 5, want: 6},
		{name: "behind known (a failover undid increments)", counter: "3", known: 5, want: 6},
		{name: "past known (someone moved already)", counter: "7", known: 5, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "epoch:" + strings.ReplaceAll(tt.name, " ", "_")
			if tt.counter != "" {
				require.NoError(t, rdb.Set(ctx, key, tt.counter, 0).Err())
			}
			n, err := be.RaiseEpoch(ctx, key, tt.known)
			require.NoError(t, err)
			require.Equal(t, tt.want, n)
			got, err := be.Epoch(ctx, key)
			require.NoError(t, err)
			require.Equal(t, tt.want, got, "the counter holds what RaiseEpoch returned")
		})
	}
}

// With WaitReplicas, writes return once a replica has them; without a
// replica they fail with ErrNotReplicated within the caller's deadline
// (the master has the write: the cache replays it).
func TestBackend_WaitReplicas(t *testing.T) {
	t.Parallel()
	primary, replica := startReplicated(t)
	be := goredis.Must(primary.Client(t), &goredis.Options{WaitReplicas: 1})
	rr := replica.Client(t)
	ctx := t.Context()
	require.NoError(t, be.Set(ctx, "k", []byte("v"), time.Minute))
	require.Equal(t, "v", rr.Get(ctx, "k").Val(), "the replica had the write when Set returned")
	require.NoError(t, be.TouchTags(ctx, []string{"t1", "t2"}, 42, time.Minute))
	require.Equal(t, "42", rr.Get(ctx, "t2").Val())
	n, err := be.NextEpoch(ctx, "e")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, "1", rr.Get(ctx, "e").Val())
	n, err = be.RaiseEpoch(ctx, "e", 3)
	require.NoError(t, err)
	require.EqualValues(t, 4, n)
	require.Equal(t, "4", rr.Get(ctx, "e").Val())
	require.NoError(t, be.Delete(ctx, "k", "t1"))
	require.Zero(t, rr.Exists(ctx, "k", "t1").Val(), "the replica had the deletes when Delete returned")

	// Without a replica WAIT gives up (after 1 s, with no deadline on ctx:
	// that WAIT's share of a deadline leaves its answer time to come back
	// is a scheduling bound, not asserted here) and the write is refused.
	alone := goredis.Must(redistest.Start(t).Client(t), &goredis.Options{WaitReplicas: 1})
	err = alone.Delete(ctx, "k")
	require.ErrorIs(t, err, goredis.ErrNotReplicated)

	_, err = goredis.New(primary.Client(t), &goredis.Options{WaitReplicas: -1})
	require.ErrorIs(t, err, tier.ErrInvalidOptions)
}

// startReplicated starts a primary and a replica of it, in sync.
func startReplicated(t *testing.T) (primary, replica *redistest.Server) {
	t.Helper()
	primary, replica = redistest.Start(t), redistest.Start(t)
	rr := replica.Client(t)
	ctx := t.Context()
	require.NoError(t, rr.Do(ctx, "REPLICAOF", "127.0.0.1", primary.Port()).Err())
	require.Eventually(t, func() bool {
		info, err := rr.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, 10*time.Second, 10*time.Millisecond, "the replica is in sync")
	return primary, replica
}
