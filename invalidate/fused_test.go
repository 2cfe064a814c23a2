package invalidate_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// newSharedNode is an instance whose bus and cache share one client, as
// an application that hands the same client to both does: the bus then
// sends a Delete's DEL with its PUBLISH (see tier.DeletePublisher).
func newSharedNode(t *testing.T, client redis.UniversalClient, ns string) *node {
	t.Helper()
	n := startNode(t, client, client, ns, nodeOpts{})
	rctx, rcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer rcancel()
	require.NoError(t, n.bus.Ready(rctx))
	return n
}

// warmB puts key's value v in L2 (through a) and in b's L1.
func warmB(t *testing.T, a, b *node, key, v string) {
	t.Helper()
	// On Cluster a shard is not used until the lineage check after it was
	// first seen: Set fails until then, and what it leaves is replayed as
	// a Delete of the key (L2 may still hold an older value), which may
	// come after a later Set that succeeded and remove its value. So the
	// Set counts once it succeeded with nothing queued for replay before it.
	var err error
	if !assert.Eventually(t, func() bool {
		if a.cache.Stats().PendingInvalidations != 0 {
			return false
		}
		err = a.cache.Set(t.Context(), key, v, time.Hour)
		return err == nil
	}, time.Minute, time.Millisecond, "Set %s", key) {
		require.NoError(t, err, "the last Set")
	}
	var last atomic.Value // why the last try failed, for the failure message
	if !assert.Eventually(t, func() bool {
		got, err := b.cache.GetOrLoad(t.Context(), key, func(context.Context, string) (string, error) {
			return "", fmt.Errorf("origin read for %s: L2 should hold it", key)
		})
		if err != nil || got != v {
			last.Store(fmt.Sprintf("GetOrLoad: %q, %v", got, err))
			return false
		}
		_, ok := b.cache.GetIfPresent(key)
		last.Store(fmt.Sprintf("GetOrLoad gave %q, not in L1 after", got))
		return ok
	}, time.Minute, time.Millisecond, "B holds %s in L1", key) { // liveness only: generous for a loaded machine
		t.Fatalf("last try: %v; A's key %s, B's key %s; A's cache %+v; B's bus %+v; B's cache %+v", last.Load(),
			a.cache.Key(key), b.cache.Key(key), a.cache.Stats(), b.bus.Stats(), b.cache.Stats())
	}
}

// TestBus_DeleteAndPublish_OneServer: on one server, with the bus and the
// cache on one client, a Delete's DEL travels with its PUBLISH (the bus
// counts it), the other instance drops its copy, and Redis applies the DEL
// before it delivers the invalidation: a subscriber of both the channel
// and the keyspace events sees each key's "del" before the message.
func TestBus_DeleteAndPublish_OneServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	admin := srv.Client(t)
	require.NoError(t, admin.ConfigSet(t.Context(), "notify-keyspace-events", "Kg").Err())
	a := newSharedNode(t, srv.Client(t), ns)
	b := newSharedNode(t, srv.Client(t), ns)

	// One connection hears both, in the order Redis produced them.
	ps := admin.Subscribe(t.Context(), invalidate.Channel(ns))
	t.Cleanup(func() { _ = ps.Close() })
	require.NoError(t, ps.PSubscribe(t.Context(), "__keyspace@0__:*"))
	for range 2 {
		_, err := ps.Receive(t.Context()) // the confirmations
		require.NoError(t, err)
	}
	events := ps.Channel()
	var deadline <-chan time.Time // the op's: heartbeats keep coming
	next := func(i int) *redis.Message {
		t.Helper()
		select {
		case m := <-events:
			return m
		case <-deadline:
			t.Fatalf("op %d: what was expected not heard within 10 s", i)
			return nil
		}
	}

	const n = 50
	for i := range n {
		key := fmt.Sprint("user:", i)
		warmB(t, a, b, key, fmt.Sprint("v", i))
		sent := a.bus.Stats().DeletesSent
		require.NoError(t, a.cache.Delete(t.Context(), key))
		require.Equal(t, sent+1, a.bus.Stats().DeletesSent, "the DEL went with the PUBLISH")
		deadline = time.After(10 * time.Second)
		// Heard: the Set's message, then the DEL, then the Delete's message
		// (heartbeats come at any time: not counted).
		data := func(m *redis.Message) bool {
			return m.Channel == invalidate.Channel(ns) && invalidate.IsData(m.Payload)
		}
		msgs := 0
		for m := next(i); m.Channel != "__keyspace@0__:"+a.cache.Key(key) || m.Payload != "del"; m = next(i) {
			if data(m) {
				msgs++
			}
		}
		require.Equal(t, 1, msgs, "op %d: data messages heard before the DEL of %s (the Set's only)", i, key)
		for m := next(i); !data(m); m = next(i) {
		}
		require.Eventually(t, func() bool { _, ok := b.cache.GetIfPresent(key); return !ok }, 10*time.Second, 100*time.Microsecond, "B dropped %s", key)
	}
	require.Zero(t, a.cache.Stats().PendingInvalidations)
	require.Zero(t, b.bus.Stats().Gaps)
	require.Eventually(t, func() bool { return b.bus.Stats().Received == 2*n }, 10*time.Second, time.Millisecond, "a Set's and a Delete's message per op")

	// Tags are not fused: they go as before, and arrive.
	sent := a.bus.Stats().DeletesSent
	require.NoError(t, a.cache.InvalidateTags(t.Context(), "expert:1"))
	require.Equal(t, sent, a.bus.Stats().DeletesSent)
	require.Eventually(t, func() bool { return b.bus.Stats().Received == 2*n+1 }, 10*time.Second, time.Millisecond)
}

// TestBus_DeleteAndPublish_SeparateClients: a cache whose L2 client is not
// the bus's deletes and publishes in two steps, as before.
func TestBus_DeleteAndPublish_SeparateClients(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	warmB(t, a, b, "user:1", "v1")
	require.NoError(t, a.cache.Delete(t.Context(), "user:1"))
	require.Zero(t, a.bus.Stats().DeletesSent)
	require.Eventually(t, func() bool { _, ok := b.cache.GetIfPresent("user:1"); return !ok }, 10*time.Second, 100*time.Microsecond)
	left, err := srv.Client(t).Exists(t.Context(), a.cache.Key("user:1")).Result()
	require.NoError(t, err)
	require.Zero(t, left)
}

// TestBus_DeleteAndPublish_DeleteRefused: when Redis refuses the DEL (here
// an ACL that forbids it) but takes the PUBLISH that follows it in the
// pipeline, the Delete reports ErrL2, the other instance drops its copy
// anyway, and the cache keeps the key and replays its DEL (and message)
// once Redis takes it, exactly as when a separate DEL fails.
func TestBus_DeleteAndPublish_DeleteRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a := newSharedNode(t, srv.Client(t), ns)
	b := newSharedNode(t, srv.Client(t), ns)
	admin := srv.Client(t)
	warmB(t, a, b, "user:1", "v1")

	require.NoError(t, admin.Do(t.Context(), "ACL", "SETUSER", "default", "-del").Err())
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = admin.Do(context.Background(), "ACL", "SETUSER", "default", "+del").Err()
		}
	})
	received := b.bus.Stats().Received
	err := a.cache.Delete(t.Context(), "user:1")
	require.ErrorIs(t, err, tier.ErrL2)
	require.Zero(t, a.bus.Stats().DeletesSent, "the DEL was refused")
	require.Equal(t, 1, a.cache.Stats().PendingInvalidations, "kept for replay")
	require.Eventually(t, func() bool {
		_, ok := b.cache.GetIfPresent("user:1")
		return !ok && b.bus.Stats().Received > received
	}, 10*time.Second, 100*time.Microsecond, "B was told although the DEL failed")
	left, err := admin.Exists(t.Context(), a.cache.Key("user:1")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, left, "L2 still holds the value the DEL was refused for")

	require.NoError(t, admin.Do(t.Context(), "ACL", "SETUSER", "default", "+del").Err())
	restored = true
	require.Eventually(t, func() bool { return a.cache.Stats().PendingInvalidations == 0 }, 10*time.Second, time.Millisecond, "replayed")
	left, err = admin.Exists(t.Context(), a.cache.Key("user:1")).Result()
	require.NoError(t, err)
	require.Zero(t, left, "the replay deleted it")
	require.Positive(t, a.cache.Stats().Replayed)
}

// TestBus_DeleteAndPublish_Cluster: on Cluster, with the bus and the
// cache on one ClusterClient, a key on the master the channel is published
// on is deleted in the PUBLISH's pipeline; a key on another master falls
// back to a separate DEL on its own master, then the PUBLISH; both reach
// the other instance, in order, and leave L2 without the key.
func TestBus_DeleteAndPublish_Cluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-master cluster")
	}
	t.Parallel()
	c := redistest.StartCluster(t, &redistest.ClusterOptions{ReplicasPerMaster: redistest.NoReplicas})
	ns := "fused"
	a := newSharedNode(t, c.Client(t), ns)
	b := newSharedNode(t, c.Client(t), ns)
	chanMaster := c.MasterOfKey(invalidate.Channel(ns))
	var same, other string
	for i := 0; same == "" || other == ""; i++ {
		require.Less(t, i, 1000)
		k := fmt.Sprint("user:", i)
		if c.MasterOfKey(a.cache.Key(k)) == chanMaster {
			if same == "" {
				same = k
			}
		} else if other == "" {
			other = k
		}
	}
	check := c.Client(t)
	for _, tt := range []struct {
		key   string
		fused bool
	}{{same, true}, {other, false}, {same, true}} {
		warmB(t, a, b, tt.key, "v-"+tt.key)
		sent := a.bus.Stats().DeletesSent
		received := b.bus.Stats().Received
		require.NoError(t, a.cache.Delete(t.Context(), tt.key))
		if tt.fused {
			require.Equal(t, sent+1, a.bus.Stats().DeletesSent, "%s is on the channel's master", tt.key)
		} else {
			require.Equal(t, sent, a.bus.Stats().DeletesSent, "%s is on another master", tt.key)
		}
		require.Eventually(t, func() bool {
			_, ok := b.cache.GetIfPresent(tt.key)
			return !ok && b.bus.Stats().Received > received
		}, 10*time.Second, 100*time.Microsecond, "B dropped %s", tt.key)
		left, err := check.Exists(t.Context(), a.cache.Key(tt.key)).Result()
		require.NoError(t, err)
		require.Zero(t, left)
	}
	// The Sets refused while the shards were held are replayed.
	require.Eventually(t, func() bool { return a.cache.Stats().PendingInvalidations == 0 }, 10*time.Second, time.Millisecond)
	require.Zero(t, b.bus.Stats().Gaps)
}

// TestBus_DeleteAndPublish_FencesLoadOnAnotherInstance: a load on A that
// read the origin before B's Delete (fused: DEL and PUBLISH in one
// pipeline) cannot put what it read in L2 or keep it in A's L1 once A has
// heard the Delete: the DEL removed the load's lease, the message fenced
// the load. Every instance, including one that starts afterwards, then
// reads the new version.
func TestBus_DeleteAndPublish_FencesLoadOnAnotherInstance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a := newSharedNode(t, srv.Client(t), ns)
	b := newSharedNode(t, srv.Client(t), ns)
	var version atomic.Int64
	version.Store(1)
	read := func(context.Context, string) (string, error) { return fmt.Sprint(version.Load()), nil }
	started, release := make(chan struct{}), make(chan struct{})
	loaded := make(chan string, 1)
	go func() {
		v, err := a.cache.GetOrLoad(context.Background(), "user:1", func(ctx context.Context, k string) (string, error) {
			v, err := read(ctx, k)
			close(started)
			<-release
			return v, err
		})
		assert.NoError(t, err)
		loaded <- v
	}()
	<-started
	version.Store(2)
	heard := a.bus.Stats().Received
	sent := b.bus.Stats().DeletesSent
	require.NoError(t, b.cache.Delete(t.Context(), "user:1"))
	require.Equal(t, sent+1, b.bus.Stats().DeletesSent, "the DEL went with the PUBLISH")
	require.Eventually(t, func() bool { return a.bus.Stats().Received > heard }, 10*time.Second, 100*time.Microsecond, "A heard the Delete")
	close(release)
	require.Equal(t, "1", <-loaded, "the load that began before the Delete answers its own caller")

	c := newSharedNode(t, srv.Client(t), ns)
	for name, n := range map[string]*node{"A": a, "B": b, "a new instance": c} {
		v, err := n.cache.GetOrLoad(t.Context(), "user:1", read)
		require.NoError(t, err)
		require.Equal(t, "2", v, "%s reads the new version", name)
	}
}
