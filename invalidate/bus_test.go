package invalidate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/obstest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
	"github.com/tiercache/tiercache/tiertest"
)

const (
	// heartbeat and deadAfter are the short bus timings of the tests about
	// a silent subscription.
	heartbeat = 50 * time.Millisecond
	deadAfter = 3 * heartbeat
	// nodeHeartbeat is every other node's: long enough that a busy
	// machine's pauses are not silences (DeadAfter is 3 heartbeats). A
	// subscription replaced after a silence loses what was sent meanwhile
	// (the cache drops its L1 instead), and the tests count messages: with
	// 50 ms, a loaded run lost some of 500 Deletes that way.
	nodeHeartbeat = time.Second
)

// node is one application instance: a bus and a cache, each on its own
// connection (optionally through a proxy), as separate processes would be.
type node struct {
	cache *tier.Cache[string]
	bus   *invalidate.Bus
	rec   *obstest.Recorder
	// stop ends the bus's Run and waits until it returned; the test's
	// cleanup calls it too.
	stop func()
}

type nodeOpts struct {
	busAddr, cacheAddr string // default: the server
	l2Timeout          time.Duration
	heartbeat          time.Duration // default: nodeHeartbeat
}

func newNode(t testing.TB, srv *redistest.Server, ns string, no nodeOpts) *node {
	t.Helper()
	client := func(addr string) *redis.Client {
		o := srv.Options()
		if addr != "" {
			o.Addr = addr
		}
		o.MaxRetries = -1
		// Socket timeouts far above the contexts' deadlines (L2Timeout,
		// the bus's own), which bound every call. At 200 ms, a busy
		// machine made DELs and PUBLISHes time out in tests that are not
		// about timeouts.
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second, 5*time.Second
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return startNode(t, client(no.busAddr), client(no.cacheAddr), ns, no)
}

// startNode makes a node of a bus on busClient and a cache on cacheClient
// (the same client for both is what tier.DeletePublisher needs), runs the
// bus until the test ends, and returns once its subscription is confirmed.
func startNode(t testing.TB, busClient, cacheClient redis.UniversalClient, ns string, no nodeOpts) *node {
	t.Helper()
	hb := no.heartbeat
	if hb == 0 {
		hb = nodeHeartbeat
	}
	bus := invalidate.Must(busClient, &invalidate.Options{Heartbeat: hb})
	rec := &obstest.Recorder{}
	l2Timeout := no.l2Timeout
	if l2Timeout == 0 {
		// Generous: most tests here are not about a slow Redis, and on a
		// busy machine 500 concurrent Deletes did not all get their DEL
		// and PUBLISH through a 20-connection pool within 1 s.
		l2Timeout = 5 * time.Second
	}
	c, err := tier.New(&tier.Options[string]{
		Namespace: ns, L2: goredis.Must(cacheClient, nil), Invalidator: bus, Observer: rec,
		L2Timeout: l2Timeout, BreakerCooldown: 50 * time.Millisecond, TTL: time.Hour,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		require.NoError(t, <-done)
	})
	t.Cleanup(func() {
		require.NoError(t, c.Close())
		stop()
	})
	// Wait until the subscription is confirmed (its confirmation drops L1).
	require.Eventually(t, func() bool { return rec.Dropped("subscribed") > 0 }, 5*time.Second, time.Millisecond)
	return &node{cache: c, bus: bus, rec: rec, stop: stop}
}

func nsFor(t *testing.T) string { return "inv-" + strings.ReplaceAll(t.Name(), "/", "-") }

// store is the origin: a versioned value per key.
type store struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *store) write(k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]int{}
	}
	s.m[k]++
	return s.m[k]
}

func (s *store) load(_ context.Context, k string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.m[k]), nil
}

func TestBus_DeleteReachesOtherInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	db := &store{}
	db.write("user:1")
	for _, n := range []*node{a, b} {
		v, err := n.cache.GetOrLoad(t.Context(), "user:1", db.load)
		require.NoError(t, err)
		require.Equal(t, "1", v)
	}
	// B's value is in its L1 (a flight writes L1 asynchronously after an
	// L2 hit): wait for it, so that "not in L1" below means "dropped".
	require.Eventually(t, func() bool { _, ok := b.cache.GetIfPresent("user:1"); return ok }, 10*time.Second, 100*time.Microsecond)
	db.write("user:1")
	require.NoError(t, a.cache.Delete(t.Context(), "user:1"))
	require.Eventually(t, func() bool {
		_, ok := b.cache.GetIfPresent("user:1")
		return !ok && b.bus.Stats().Received == 1
	}, 10*time.Second, 100*time.Microsecond, "B heard the message and dropped its copy")
	v, err := b.cache.GetOrLoad(t.Context(), "user:1", db.load)
	require.NoError(t, err)
	require.Equal(t, "2", v)
	require.Zero(t, a.bus.Stats().Received, "A ignores its own messages")
	require.EqualValues(t, 1, b.bus.Stats().Received)
	require.Zero(t, b.bus.Stats().Gaps)
}

func TestBus_TagsReachOtherInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	db := &store{}
	db.write("list")
	tags := []string{"expert:42"}
	v, err := b.cache.GetOrLoadTagged(t.Context(), "list", tags, db.load)
	require.NoError(t, err)
	require.Equal(t, "1", v)
	time.Sleep(150 * time.Millisecond) // past the value's creation plus the default clock-skew allowance
	db.write("list")
	require.NoError(t, a.cache.InvalidateTags(t.Context(), "expert:42"))
	require.Eventually(t, func() bool {
		v, err := b.cache.GetOrLoadTagged(t.Context(), "list", tags, db.load)
		return err == nil && v == "2"
	}, 10*time.Second, time.Millisecond)
}

// TestBus_BatchesConcurrentInvalidations: invalidations that wait while a
// PUBLISH is in flight go out together in the next message. A's bus talks
// to Redis through a proxy that holds each PUBLISH for a 40 ms round trip,
// so that the Deletes pile up behind it whatever the machine's speed (with
// a sub-millisecond round trip, a busy machine could run the 500 Deletes
// one after another, each in its own message).
func TestBus_BatchesConcurrentInvalidations(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := startMember(t, srv.Client(t), nil, ns), startMember(t, srv.Client(t), nil, ns)
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() {
			// A failed publish is retried, as the cache's replay would.
			for {
				err := a.pubs[ns].Publish(context.Background(), []string{fmt.Sprintf("k%d", i)}, nil)
				if err == nil {
					return
				}
				t.Logf("publish k%d: %v (retrying)", i, err)
			}
		})
	}
	wg.Wait()
	s := b.sinks[ns]
	s.waitFor(t, 10*time.Second, "all 500 keys heard", func() bool { return s.count() == 500 })
	require.Less(t, a.bus.Stats().Sent, uint64(500), "several invalidations share a message")
	require.Zero(t, b.bus.Stats().Gaps)
	t.Logf("500 invalidations went out in %d messages", a.bus.Stats().Sent)
}

func TestBus_SubscriberKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	admin := srv.Client(t)
	db := &store{}
	db.write("k")
	_, err := b.cache.GetOrLoad(t.Context(), "k", db.load)
	require.NoError(t, err)

	// Kill every subscriber connection for 2 s (kill again whenever one
	// comes back), while A writes.
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		require.NoError(t, admin.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err())
		db.write("k")
		require.NoError(t, a.cache.Delete(t.Context(), "k"))
		time.Sleep(20 * time.Millisecond)
	}
	want := fmt.Sprint(db.m["k"])
	// Once the subscription is back, B never serves a value older than the
	// last write.
	require.Eventually(t, func() bool {
		v, err := b.cache.GetOrLoad(t.Context(), "k", db.load)
		return err == nil && v == want
	}, 10*time.Second, time.Millisecond)
	require.Positive(t, b.bus.Stats().Reconnects)
	require.Greater(t, b.rec.Dropped("subscribed"), 1, "each resubscription dropped L1")
}

func TestBus_SubscriberBlackholed(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	proxy := faultproxy.New(t, srv.Addr())
	a := newNode(t, srv, ns, nodeOpts{})
	b := newNode(t, srv, ns, nodeOpts{busAddr: proxy.Addr(), heartbeat: heartbeat}) // only B's bus goes through the proxy
	db := &store{}
	db.write("k")
	v, err := b.cache.GetOrLoad(t.Context(), "k", db.load)
	require.NoError(t, err)
	require.Equal(t, "1", v)

	proxy.Blackhole() // no reset: a silently dead subscription
	cut := time.Now()
	db.write("k")
	require.NoError(t, a.cache.Delete(t.Context(), "k")) // B cannot hear this
	// B stops trusting its old copy within DeadAfter plus StaleBound (both
	// 3 heartbeats here) and reads L2, which Delete updated. How soon is
	// logged, not asserted: the bus's timers run when the scheduler lets
	// them, and a busy machine adds its delays to the bound.
	require.Eventually(t, func() bool {
		v, err := b.cache.GetOrLoad(t.Context(), "k", db.load)
		return err == nil && v == "2"
	}, 10*time.Second, time.Millisecond)
	detected := time.Since(cut)
	require.Positive(t, b.rec.Dropped("bus_down"))
	t.Logf("stale copy dropped %v after the blackhole (bound %v)", detected.Round(time.Millisecond), 2*deadAfter)

	// Keep it blackholed for a while: nothing older than the bound is served
	// (each read comes at least 2 × DeadAfter after the write: sleeping
	// longer on a busy machine only ages the copy more).
	for range 20 {
		db.write("k")
		require.NoError(t, a.cache.Delete(t.Context(), "k"))
		want := fmt.Sprint(db.m["k"])
		time.Sleep(2 * deadAfter)
		before := b.cache.Stats()
		v, err := b.cache.GetOrLoad(t.Context(), "k", db.load)
		require.NoError(t, err)
		require.Equal(t, want, v, "before %+v\nafter %+v", before, b.cache.Stats())
	}
	proxy.Heal()
	require.Eventually(t, func() bool { return b.rec.Dropped("subscribed") > 1 }, 5*time.Second, time.Millisecond, "B resubscribed")
}

func TestBus_RedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{l2Timeout: 100 * time.Millisecond}), newNode(t, srv, ns, nodeOpts{l2Timeout: 100 * time.Millisecond})
	db := &store{}
	for _, n := range []*node{a, b} {
		_, err := n.cache.GetOrLoad(t.Context(), "k", db.load)
		require.NoError(t, err)
	}
	before := []int{a.rec.Dropped("subscribed"), b.rec.Dropped("subscribed")}
	srv.Kill()
	srv.Restart()
	require.Eventually(t, func() bool {
		return a.rec.Dropped("subscribed") > before[0] && b.rec.Dropped("subscribed") > before[1]
	}, 10*time.Second, time.Millisecond, "every instance dropped L1")
	for _, n := range []*node{a, b} {
		_, ok := n.cache.GetIfPresent("k")
		require.False(t, ok)
	}
}

func TestBus_CutWriterReplays(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	proxy := faultproxy.New(t, srv.Addr())
	a := newNode(t, srv, ns, nodeOpts{busAddr: proxy.Addr(), cacheAddr: proxy.Addr(), l2Timeout: 100 * time.Millisecond})
	b, c := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	db := &store{}
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		db.write(keys[i])
		for _, n := range []*node{b, c} {
			_, err := n.cache.GetOrLoad(t.Context(), keys[i], db.load)
			require.NoError(t, err)
		}
	}
	proxy.Cut()
	for _, k := range keys {
		db.write(k)
		err := a.cache.Delete(t.Context(), k)
		require.ErrorIs(t, err, tier.ErrL2, "the caller learns the invalidation did not go out")
	}
	// The replayer takes the queue out while it retries, so the count can
	// dip below 100 for a moment; it never reaches 0 while the cut lasts.
	require.Positive(t, a.cache.Stats().PendingInvalidations)
	proxy.Heal()
	healed := time.Now()
	require.Eventually(t, func() bool {
		for _, n := range []*node{b, c} {
			for _, k := range keys {
				v, err := n.cache.GetOrLoad(t.Context(), k, db.load)
				if err != nil || v != "2" {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "the other instances converge after the heal")
	t.Logf("converged %v after the heal; replayed %d", time.Since(healed).Round(time.Millisecond), a.cache.Stats().Replayed)
	require.Zero(t, a.cache.Stats().PendingInvalidations)
}

// TestBus_RandomWorkloadChecker runs reads and writes on 3 instances against
// a versioned store and checks the recorded history: no read may return a
// version older than one whose write (and Delete) completed more than the
// bus's bound (2 × DeadAfter, see below) before the read began.
func TestBus_RandomWorkloadChecker(t *testing.T) {
	if testing.Short() {
		t.Skip("long randomized test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	nodes := []*node{newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})}
	const keys = 20
	type write struct {
		node    int
		version int
		done    time.Time
	}
	var mu sync.Mutex
	versions := make([]int, keys)
	writes := make([][]write, keys) // committed writes per key, in order
	type read struct {
		node    int
		key     int
		version int
		began   time.Time
	}
	var reads []read
	load := func(_ context.Context, k string) (string, error) {
		var i int
		fmt.Sscanf(k, "k%d", &i)
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(versions[i]), nil
	}
	var wg sync.WaitGroup
	var ops atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ni := w % 3
			n := nodes[ni]
			for i := 0; time.Now().Before(deadline); i++ {
				k := (i*7 + w*13) % keys
				key := fmt.Sprintf("k%d", k)
				if (i+w)%10 == 0 { // 10% writes
					mu.Lock()
					versions[k]++
					v := versions[k]
					mu.Unlock()
					if err := n.cache.Delete(context.Background(), key); err != nil {
						t.Errorf("delete: %v", err)
						return
					}
					mu.Lock()
					writes[k] = append(writes[k], write{node: ni, version: v, done: time.Now()})
					mu.Unlock()
				} else {
					began := time.Now()
					s, err := n.cache.GetOrLoad(context.Background(), key, load)
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					var v int
					fmt.Sscan(s, &v)
					mu.Lock()
					reads = append(reads, read{node: ni, key: k, version: v, began: began})
					mu.Unlock()
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	// The bus's promise: a message is delivered within milliseconds, and
	// if one is lost on a subscription that went silent (which a loaded
	// machine can cause with a 50 ms heartbeat), the silence is noticed
	// within DeadAfter and from then on nothing older than StaleBound
	// (= DeadAfter here) is served.
	const bound = 2 * deadAfter
	stale := 0
	for _, r := range reads {
		ws := writes[r.key]
		i := sort.Search(len(ws), func(i int) bool { return !ws[i].done.Before(r.began.Add(-bound)) })
		// ws[:i] completed more than bound before the read began.
		if i > 0 && r.version < ws[i-1].version {
			stale++
		}
	}
	t.Logf("%d ops, %d reads checked, %d stale", ops.Load(), len(reads), stale)
	if stale > 0 {
		for i, n := range nodes {
			t.Logf("node %d: bus %+v; drops: subscribed %d, sequence_gap %d, bus_down %d, bus_silence_over %d",
				i, n.bus.Stats(), n.rec.Dropped("subscribed"), n.rec.Dropped("sequence_gap"), n.rec.Dropped("bus_down"), n.rec.Dropped("bus_silence_over"))
		}
	}
	require.NotEmpty(t, reads)
	require.Zero(t, stale, "an instance served a version older than its own completed write")
	for _, n := range nodes {
		require.Eventually(t, func() bool {
			for k := range keys {
				s, err := n.cache.GetOrLoad(t.Context(), fmt.Sprintf("k%d", k), load)
				mu.Lock()
				want := fmt.Sprint(versions[k])
				mu.Unlock()
				if err != nil || s != want {
					return false
				}
			}
			return true
		}, 10*time.Second, 5*time.Millisecond, "every instance converges on the last versions")
	}
}

func TestBus_InvalidateAllClearsTheNamespace(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	rdb := srv.Client(t)
	db := &store{}
	keys := []string{"k1", "k2", "k3"}
	for _, k := range keys {
		db.write(k)
		for _, n := range []*node{a, b} {
			_, err := n.cache.GetOrLoad(t.Context(), k, db.load)
			require.NoError(t, err)
		}
	}
	oldKey := a.cache.Key("k1")
	require.Eventually(t, func() bool { return rdb.Exists(t.Context(), oldKey).Val() == 1 }, 10*time.Second, time.Millisecond)
	for _, k := range keys {
		db.write(k)
	}
	require.NoError(t, a.cache.InvalidateAll(t.Context()))
	require.NotEqual(t, oldKey, a.cache.Key("k1"), "the namespace moved to its next epoch")
	for _, n := range []*node{a, b} {
		require.Eventually(t, func() bool {
			for _, k := range keys {
				v, err := n.cache.GetOrLoad(t.Context(), k, db.load)
				if err != nil || v != "2" {
					return false
				}
			}
			return true
		}, 10*time.Second, time.Millisecond, "every instance reads the new values")
	}
	// A new instance starts in the new epoch.
	c := newNode(t, srv, ns, nodeOpts{})
	require.Equal(t, a.cache.Key("k1"), c.cache.Key("k1"))
	require.EqualValues(t, 1, rdb.Exists(t.Context(), oldKey).Val(), "no DEL, no KEYS: the old keys just expire")
}

// TestBus_FencedLoadRandomized is the fencing race with random timings,
// across instances that hear each other: a load on A reads version n and
// dawdles, B writes n+1 and deletes at a random moment, A's load finishes.
// Afterwards every instance returns the latest version and L2 never holds
// an older one. TIERCACHE_SOAK=1 runs 10k rounds; the default run 1k.
func TestBus_FencedLoadRandomized(t *testing.T) {
	if testing.Short() {
		t.Skip("long randomized test; run without -short")
	}
	t.Parallel()
	rounds := 1000
	if os.Getenv("TIERCACHE_SOAK") != "" {
		rounds = 10000
	}
	srv := redistest.Start(t)
	ns := nsFor(t)
	a, b := newNode(t, srv, ns, nodeOpts{}), newNode(t, srv, ns, nodeOpts{})
	rdb := srv.Client(t)
	var version atomic.Int64
	read := func(context.Context, string) (string, error) { return fmt.Sprint(version.Load()), nil }
	rnd := rand.New(rand.NewPCG(1, 2))
	jitter := func() time.Duration { return time.Duration(rnd.IntN(1500)) * time.Microsecond }
	for i := range rounds {
		key := fmt.Sprintf("r%d", i%50)
		d1, d2 := jitter(), jitter()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = a.cache.GetOrLoad(context.Background(), key, func(ctx context.Context, k string) (string, error) {
				v, err := read(ctx, k)
				time.Sleep(d1)
				return v, err
			})
		}()
		go func() {
			defer wg.Done()
			time.Sleep(d2)
			version.Add(1)
			assert.NoError(t, b.cache.Delete(context.Background(), key))
		}()
		wg.Wait()
		want := fmt.Sprint(version.Load())
		// L2 holds nothing, a lease, or the latest version: never an old one.
		require.Eventually(t, func() bool {
			s, err := rdb.Get(t.Context(), a.cache.Key(key)).Bytes()
			if errors.Is(err, redis.Nil) {
				return true
			}
			if err != nil || bytes.HasPrefix(s, []byte(tier.LeasePrefix)) {
				return false // wait for A's flight to write or to find its lease gone
			}
			// The schema tag is the cache's (a hash of the value type): this
			// test is about versions, so it decodes under the tag it finds.
			h, _, err := codec.Parse(s)
			require.NoError(t, err)
			var got string
			_, err = codec.Decode(codec.Msgpack(), s, h.Schema, 0, &got)
			require.NoError(t, err)
			require.Equal(t, want, got, "round %d: L2 holds an old version", i)
			return true
		}, 5*time.Second, 200*time.Microsecond)
		for _, n := range []*node{a, b} {
			var v string
			var err error
			require.Eventually(t, func() bool {
				v, err = n.cache.GetOrLoad(t.Context(), key, read)
				return err == nil && v == want
			}, 5*time.Second, 200*time.Microsecond, "round %d", i)
			if v != want {
				t.Logf("round %d: got %q %v want %q; stats %+v; bus %+v", i, v, err, want, n.cache.Stats(), n.bus.Stats())
			}
		}
	}
	t.Logf("%d rounds; stale loads fenced by the lease: %d", rounds, a.cache.Stats().LeaseLost)
}

// TestBus_RefusedChannel: a bus serving two namespaces under an ACL user
// that may use only the first one's channel. Redis refuses the second
// channel (NOPERM); the first is still confirmed and carries invalidations
// between instances, while the second stays unconfirmed (its cache serves
// L1 only within StaleBound), is reported (Stats, SubscribeErr, the
// observer) and retried without disturbing the first.
func TestBus_RefusedChannel(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	allowed, refused := nsFor(t)+"-allowed", nsFor(t)+"-refused"
	// Only the buses log in as the restricted user; the caches' L2 uses the
	// default user, so that only pub/sub is refused.
	require.NoError(t, srv.Client(t).Do(t.Context(), "ACL", "SETUSER", "bus", "reset", "on", ">bus-secret",
		"resetchannels", "&"+invalidate.Channel(allowed), "-@all", "+publish", "+subscribe", "+unsubscribe").Err())
	const staleBound = 150 * time.Millisecond

	type instance struct {
		bus    *invalidate.Bus
		caches map[string]*tier.Cache[string]
		recs   map[string]*obstest.Recorder
		clock  *tiertest.Clock // the refused namespace's cache's
	}
	start := func() *instance {
		o := srv.Options()
		o.Username, o.Password = "bus", "bus-secret"
		rdb := redis.NewClient(o)
		t.Cleanup(func() { _ = rdb.Close() })
		// DeadAfter is long: no silence replaces a subscription here.
		in := &instance{
			bus:    invalidate.Must(rdb, &invalidate.Options{Heartbeat: heartbeat, DeadAfter: 10 * time.Second, StaleBound: staleBound}),
			caches: map[string]*tier.Cache[string]{},
			recs:   map[string]*obstest.Recorder{},
			clock:  tiertest.NewClock(time.Now()),
		}
		l2 := srv.Client(t)
		for _, ns := range []string{allowed, refused} {
			in.recs[ns] = &obstest.Recorder{}
			o := &tier.Options[string]{
				Namespace: ns, L2: goredis.Must(l2, nil), Invalidator: in.bus, Observer: in.recs[ns],
				L2Timeout: time.Second, TTL: time.Hour,
			}
			if ns == refused {
				// The age of its L1 copy moves when the test says so: on
				// the wall clock, a busy machine could make the copy
				// visible only once it was older than StaleBound.
				o.Clock = in.clock
			}
			c, err := tier.New(o)
			require.NoError(t, err)
			in.caches[ns] = c
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- in.bus.Run(ctx) }()
		t.Cleanup(func() {
			for _, c := range in.caches {
				require.NoError(t, c.Close())
			}
			cancel()
			require.NoError(t, <-done)
		})
		return in
	}
	x, y := start(), start()

	for _, in := range []*instance{x, y} {
		require.Eventually(t, func() bool { return in.recs[allowed].Dropped("subscribed") > 0 },
			5*time.Second, time.Millisecond, "the allowed channel is confirmed")
	}

	// X's copy of an allowed key is dropped when Y deletes it.
	db := &store{}
	db.write("k")
	_, err := x.caches[allowed].GetOrLoad(t.Context(), "k", db.load)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := x.caches[allowed].GetIfPresent("k"); return ok }, 10*time.Second, 100*time.Microsecond)
	db.write("k")
	// Y deletes it, and keeps deleting for a few heartbeats so that some
	// of its messages share a pipeline with a refused heartbeat on the
	// other channel (which must not fail them).
	var wg sync.WaitGroup
	until := time.Now().Add(4 * heartbeat)
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(until) {
				assert.NoError(t, y.caches[allowed].Delete(t.Context(), "k"))
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		_, ok := x.caches[allowed].GetIfPresent("k")
		return !ok && x.bus.Stats().KeysDropped > 0
	}, 10*time.Second, 100*time.Microsecond, "X heard Y and dropped its copy")
	v, err := x.caches[allowed].GetOrLoad(t.Context(), "k", db.load)
	require.NoError(t, err)
	require.Equal(t, "2", v)
	require.Zero(t, y.bus.Stats().SendErrors, "the refused channel's heartbeats do not fail the allowed channel's messages")

	// The refused namespace stays unconfirmed: its L1 is served only within
	// StaleBound. Its clock stands still from now on: after the refusal,
	// which dropped its L1 at the bus's (wall clock) time.
	require.Eventually(t, func() bool { return x.recs[refused].Dropped("subscribe_refused") > 0 }, 5*time.Second, time.Millisecond)
	x.clock.Set(time.Now())
	_, err = x.caches[refused].GetOrLoad(t.Context(), "k", db.load)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := x.caches[refused].GetIfPresent("k"); return ok }, 5*time.Second, 100*time.Microsecond)
	x.clock.Advance(staleBound - time.Millisecond)
	_, ok := x.caches[refused].GetIfPresent("k")
	require.True(t, ok, "younger than StaleBound: served")
	x.clock.Advance(2 * time.Millisecond)
	_, ok = x.caches[refused].GetIfPresent("k")
	require.False(t, ok, "older than StaleBound: not served")

	// The refusal is reported, and retried with backoff on the same
	// connection.
	require.Eventually(t, func() bool { return x.bus.Stats().SubscribeErrors >= 3 }, 5*time.Second, time.Millisecond, "retried")
	err = x.bus.SubscribeErr(refused)
	require.ErrorIs(t, err, invalidate.ErrSubscribeRefused)
	require.True(t, redis.IsPermissionError(err), "wraps Redis's reply: %v", err)
	require.NoError(t, x.bus.SubscribeErr(allowed))
	require.Equal(t, 1, x.recs[refused].Dropped("subscribe_refused"), "reported once, not at every retry")
	require.Zero(t, x.recs[refused].Dropped("subscribed"), "never confirmed")
	require.Zero(t, x.bus.Stats().Reconnects, "a refused channel does not replace the subscription")
	require.Equal(t, 1, x.recs[allowed].Dropped("subscribed"), "nor re-confirm the allowed one")
	require.Zero(t, x.recs[allowed].Dropped("subscribe_refused"))

	// Ready says which channel is missing and why.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	err = x.bus.Ready(ctx)
	cancel()
	require.ErrorIs(t, err, invalidate.ErrSubscribeRefused)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, invalidate.Channel(refused))
	// Without the refused namespace, the bus is ready.
	require.NoError(t, x.caches[refused].Close())
	require.NoError(t, x.bus.Ready(t.Context()))
}
