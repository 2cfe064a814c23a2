package tier_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// The cluster tests run two instances (each its own ClusterClient, with
// go-redis's defaults, and its own bus, with the bus's defaults) over a
// local Redis Cluster of 3 masters and 3 replicas, under a read/write
// workload on 60 keys, while a fault happens; a checker judges every read.
//
// A read is stale if it returns a version of a key older than a write of
// that key acknowledged (the origin updated, then Delete returned, with an
// error or not) before the read began. The cache promises no stale read
// later than staleBound after the write's acknowledgment: the bus's
// StaleBound (3 s by default), which bounds what an instance serves while
// its bus cannot vouch for L1, plus the bus's tick (750 ms: how late it
// may notice a silent subscription). Every other path is far shorter: a
// healthy bus carries a Delete in about a millisecond, a Delete whose L2
// step failed is published at once anyway, and a failover is covered by
// the epoch move before the new master is read.
const (
	clusterKeys = 60
	staleBound  = 3*time.Second + 750*time.Millisecond
)

// versions is the test's origin: one version per key, bumped by each
// write, with the history of acknowledged writes for the checker.
type versions struct {
	mu   sync.Mutex
	v    map[string]int64
	acks map[string][]ack // per key, in time order
}

// ack is a write acknowledged at at; max is the highest version any write
// of the key acknowledged by then had written.
type ack struct {
	at  time.Time
	max int64
}

func newVersions() *versions {
	return &versions{v: map[string]int64{}, acks: map[string][]ack{}}
}

func (o *versions) load(_ context.Context, key string) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.v[key], nil
}

func (o *versions) bump(key string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.v[key]++
	return o.v[key]
}

func (o *versions) acked(key string, v int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.acks[key]
	m := v
	if n := len(h); n > 0 {
		m = max(m, h[n-1].max)
	}
	o.acks[key] = append(h, ack{at: time.Now(), max: m})
}

// newer returns when the first write newer than got was acknowledged, if
// that was before start (the read is stale); the zero time if not.
func (o *versions) newer(key string, got int64, start time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.acks[key]
	i := sort.Search(len(h), func(i int) bool { return h[i].max > got })
	if i == len(h) || !h[i].at.Before(start) {
		return time.Time{}
	}
	return h[i].at
}

// readLags collects how stale the stale reads were, by class of key.
type readLags struct {
	mu     sync.Mutex
	lags   map[string][]time.Duration
	beyond []string
	reads  atomic.Int64
	writes atomic.Int64
	errs   atomic.Int64 // reads that returned an error

	// mark, once set (UnixNano), starts the counts of reads that returned
	// a value and of writes whose Delete returned no error.
	mark                    atomic.Int64
	okReadsAfter, okWrAfter atomic.Int64
}

// markNow starts the counts of successful reads and writes.
func (r *readLags) markNow() { r.mark.Store(time.Now().UnixNano()) }

// ok counts a successful read or write, if after the mark.
func (r *readLags) ok(n *atomic.Int64) {
	if m := r.mark.Load(); m != 0 && time.Now().UnixNano() > m {
		n.Add(1)
	}
}

func (r *readLags) add(class, desc string, lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lags == nil {
		r.lags = map[string][]time.Duration{}
	}
	r.lags[class] = append(r.lags[class], lag)
	if lag > staleBound && len(r.beyond) < 20 {
		r.beyond = append(r.beyond, fmt.Sprintf("%s: %v", desc, lag))
	}
}

func (r *readLags) report(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("%d reads, %d writes, %d read errors", r.reads.Load(), r.writes.Load(), r.errs.Load())
	for class, l := range r.lags {
		slices.Sort(l)
		t.Logf("%s keys: %d stale reads (within the bound), p50 %v, p99 %v, max %v", class, len(l),
			l[len(l)/2], l[len(l)*99/100], l[len(l)-1])
	}
	require.Empty(t, r.beyond, "stale reads beyond %v", staleBound)
}

// clusterKey is the i-th key of the workload. Its hash tag pins its slot,
// whatever the namespace's epoch (the tag is the first "{…}" of the full
// L2 key: the namespace has no braces).
func clusterKey(i int) string { return fmt.Sprintf("user:{%d}", i) }

// fleet is the two instances over a cluster.
type fleet struct {
	cl   *redistest.Cluster
	a, b *tier.Cache[int64]
	recs [2]*recorder
}

func startFleet(t *testing.T, args ...string) *fleet {
	t.Helper()
	cl := redistest.StartCluster(t, &redistest.ClusterOptions{Args: args})
	f, _ := startInstances(t, func() redis.UniversalClient { return cl.Client(t) })
	f.cl = cl
	return f
}

// startInstances starts the two instances of a fleet, each with its own
// clients from client (one for L2, one for its bus, with the bus's
// defaults), and waits until both buses subscribed; it returns the buses
// too.
func startInstances(t *testing.T, client func() redis.UniversalClient) (*fleet, [2]*invalidate.Bus) {
	t.Helper()
	f := &fleet{}
	var buses [2]*invalidate.Bus
	ns := testNamespace(t)
	caches := make([]*tier.Cache[int64], 2)
	for i := range caches {
		f.recs[i] = &recorder{}
		l2 := goredis.Must(client(), nil)
		buses[i] = runBus(t, client(), &invalidate.Options{})
		caches[i] = newCache(t, &tier.Options[int64]{
			Namespace: ns, L2: l2, Observer: f.recs[i], Invalidator: buses[i],
			// Long beside a loaded machine's stalls: the tests assert that
			// a healthy shard's calls work while another is down, and with
			// the default 100 ms a healthy DEL timed out once under CI's
			// load (TestCache_Cluster_OneShardDown). A dead shard's calls
			// still fail, a second later.
			L2Timeout: time.Second,
		})
	}
	f.a, f.b = caches[0], caches[1]
	for _, r := range f.recs {
		require.Eventually(t, func() bool { return r.Dropped("subscribed") > 0 },
			20*time.Second, 10*time.Millisecond, "the buses subscribed")
	}
	return f, buses
}

// run runs the workload until ctx ends: on each instance, readers
// (GetOrLoad) and one writer (origin, then Delete) over clusterKeys keys;
// class names the class of a key for the report.
//
// A stale read's lag is counted from the acknowledgment of the newer
// write, or, for keys on a shard that was down when it was acknowledged,
// for reads after the shard was back, from when it was back (since(key,
// ackedAt, start)): while a shard is down its Deletes cannot reach it, and
// once it answers again the old value it still holds may be read (by any
// instance whose L1 does not hold a newer one) until the writer's replay
// deletes it and announces it again.
func (f *fleet) run(ctx context.Context, o *versions, lags *readLags, class func(key string) string, since func(key string, ackedAt, start time.Time) time.Time) *sync.WaitGroup {
	var wg sync.WaitGroup
	keys := make([]string, clusterKeys)
	for i := range keys {
		keys[i] = clusterKey(i)
	}
	for n, c := range []*tier.Cache[int64]{f.a, f.b} {
		for r := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := r; ctx.Err() == nil; i++ {
					k := keys[(i*7+n)%len(keys)]
					start := time.Now()
					v, err := c.GetOrLoad(ctx, k, o.load)
					lags.reads.Add(1)
					if err != nil {
						if ctx.Err() == nil {
							lags.errs.Add(1)
						}
						continue
					}
					lags.ok(&lags.okReadsAfter)
					if at := o.newer(k, v, start); !at.IsZero() {
						lag := start.Sub(since(k, at, start))
						lags.add(class(k), fmt.Sprintf("instance %d read %s version %d (a newer one acknowledged %v before)", n, k, v, start.Sub(at)), lag)
					}
					time.Sleep(200 * time.Microsecond) // pacing: two cores are shared
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := n; ctx.Err() == nil; i += 2 {
				k := keys[(i*13)%len(keys)]
				v := o.bump(k)
				err := c.Delete(context.WithoutCancel(ctx), k) // an error is kept for replay; the write counts as acknowledged
				o.acked(k, v)
				if err == nil {
					lags.ok(&lags.okWrAfter)
				}
				lags.writes.Add(1)
				time.Sleep(2 * time.Millisecond) // pacing
			}
		}()
	}
	return &wg
}

// TestCache_Cluster_OneShardDown: one shard (its master and its replica)
// is paused for 10 s under the workload, on a cluster that keeps serving
// the other shards (cluster-require-full-coverage no, as docs/cluster.md
// recommends). Keys on the healthy shards: written with no error, and the
// other instance stops serving an updated key within the bus's delay.
// Keys on the dead shard: their Deletes fail at L2 but are published, the
// other instance cannot read them from L2 (it goes to the origin), and the
// L2 step is replayed and announced again once the shard is back. No read
// is stale beyond staleBound.
func TestCache_Cluster_OneShardDown(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	f := startFleet(t, "--cluster-require-full-coverage", "no")
	ctx := t.Context()
	dead := f.cl.Masters()[0]
	replica := f.cl.ReplicaOf(dead)
	require.NotNil(t, replica)
	class := map[string]string{}
	for i := range clusterKeys {
		k := clusterKey(i)
		class[k] = "healthy-shard"
		if f.cl.MasterOfKey(k) == dead {
			class[k] = "dead-shard"
		}
	}
	o, lags := newVersions(), &readLags{}
	wctx, stop := context.WithCancel(ctx)
	var pausedAt, backAt atomic.Pointer[time.Time]
	since := func(k string, at, start time.Time) time.Time {
		p, b := pausedAt.Load(), backAt.Load()
		if class[k] != "dead-shard" || p == nil || at.Before(*p) || b == nil || start.Before(*b) || at.After(*b) {
			return at
		}
		return *b
	}
	wg := f.run(wctx, o, lags, func(k string) string { return class[k] }, since)

	time.Sleep(2 * time.Second) // the workload before the fault
	paused := time.Now()
	pausedAt.Store(&paused)
	dead.Pause()
	replica.Pause()

	// While the shard is down, a healthy key written by A is dropped by B.
	var healthy string
	for k, c := range class {
		if c == "healthy-shard" {
			healthy = k
			break
		}
	}
	var worst time.Duration
	pubErrs := 0
	for range 20 {
		_, err := f.b.GetOrLoad(ctx, healthy, o.load)
		require.NoError(t, err)
		v := o.bump(healthy)
		t0 := time.Now()
		if err := f.a.Delete(ctx, healthy); err != nil {
			// Only the message may fail: this bus publishes on any master,
			// the paused one included (kept for replay).
			require.ErrorContains(t, err, "publish")
			pubErrs++
		}
		o.acked(healthy, v)
		if got, err := f.a.Get(ctx, healthy); err == nil {
			require.GreaterOrEqual(t, got, v, "a healthy shard's L2 step works while another shard is down")
		}
		require.Eventually(t, func() bool {
			got, ok := f.b.GetIfPresent(healthy)
			return !ok || got >= v
		}, staleBound, 100*time.Microsecond, "B stopped serving the old version of a healthy key")
		worst = max(worst, time.Since(t0))
		time.Sleep(100 * time.Millisecond) // pacing
	}
	t.Logf("healthy-shard key, while a shard is down: B dropped the old version at most %v after A's Delete returned; %d of 20 publishes failed and were replayed", worst, pubErrs)

	time.Sleep(10*time.Second - time.Since(paused)) // the outage lasts 10 s
	dead.Resume()
	back := time.Now()
	backAt.Store(&back)
	f.cl.WaitHealthy() // the master is back (its replica still paused)
	replica.Resume()
	f.cl.WaitHealthy()
	time.Sleep(3 * time.Second) // the workload after the fault
	stop()
	wg.Wait()
	for _, c := range []*tier.Cache[int64]{f.a, f.b} {
		require.Eventually(t, func() bool { return c.Stats().PendingInvalidations == 0 },
			10*time.Second, 10*time.Millisecond, "the dead shard's invalidations were replayed")
	}
	lags.report(t)
	t.Logf("A: %+v", f.a.Stats())
	t.Logf("B: %+v", f.b.Stats())
}

// TestCache_Cluster_MasterKilled: a master is SIGKILLed under the
// workload and its replica takes over. Writes to its slots, the buses and
// L2 hits on its slots come back within 2 s of the promotion; both
// instances see the new master (lineage), drop L1 and move the namespace
// to its next epoch before reading it, so no write the failover undid is
// served; no read is stale beyond staleBound.
func TestCache_Cluster_MasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	f := startFleet(t)
	ctx := t.Context()
	victim := f.cl.Masters()[0]
	replica := f.cl.ReplicaOf(victim)
	require.NotNil(t, replica)
	var deadKey string // user:{N}
	class := map[string]string{}
	for i := range clusterKeys {
		k := clusterKey(i)
		class[k] = "other-shards"
		if f.cl.MasterOfKey(k) == victim {
			class[k] = "failed-over-shard"
			deadKey = k
		}
	}
	require.NotEmpty(t, deadKey)
	o, lags := newVersions(), &readLags{}
	wctx, stop := context.WithCancel(ctx)
	wg := f.run(wctx, o, lags, func(k string) string { return class[k] }, func(_ string, at, _ time.Time) time.Time { return at })

	time.Sleep(2 * time.Second) // the workload before the fault
	before := f.a.Key("x")
	victim.Kill()
	killed := time.Now()
	f.cl.WaitPromoted(replica)
	promoted := time.Now()

	// Writes and L2 reads of the failed-over shard: A sets a fresh key
	// there (its L2 step must work; only the message may fail, see below),
	// and B reads it from L2.
	var n int64
	var writes, bus time.Time
	require.Eventually(t, func() bool {
		n++
		k := fmt.Sprintf("probe:%d:{%s}", n, deadKey[len("user:{"):len(deadKey)-1])
		err := f.a.Set(ctx, k, n, 0)
		if err != nil && !strings.Contains(err.Error(), "publish") {
			return false
		}
		if writes.IsZero() {
			writes = time.Now()
		}
		if err == nil && bus.IsZero() {
			bus = time.Now()
		}
		hits := f.b.Stats().L2Hits
		v, err := f.b.Get(ctx, k)
		return err == nil && v == n && f.b.Stats().L2Hits > hits
	}, 20*time.Second, 10*time.Millisecond, "writes and L2 reads of the failed-over shard came back")
	back := time.Now()
	t.Logf("replica promoted (every node agrees) %v after the kill; then L2 writes back after %v, L2 hits after %v",
		promoted.Sub(killed).Round(time.Millisecond), writes.Sub(promoted).Round(time.Millisecond), back.Sub(promoted).Round(time.Millisecond))
	require.Less(t, back.Sub(promoted), 2*time.Second, "L2 writes and hits back within 2 s of the promotion")
	// This bus publishes on any master and does not reload its slot map:
	// until its next periodic reload it keeps trying the dead one (the
	// bus's own fix is not here). Logged, not asserted.
	require.Eventually(t, func() bool {
		n++
		if f.a.Set(ctx, fmt.Sprintf("probe:%d", n), n, 0) == nil && bus.IsZero() {
			bus = time.Now()
		}
		return !bus.IsZero()
	}, 90*time.Second, 50*time.Millisecond, "the bus came back")
	t.Logf("the bus published again %v after the promotion", bus.Sub(promoted).Round(time.Millisecond))

	time.Sleep(3 * time.Second) // the workload after the fault
	stop()
	wg.Wait()
	for _, c := range []*tier.Cache[int64]{f.a, f.b} {
		require.Positive(t, c.Stats().L2Failovers, "the instance saw the new master")
	}
	require.NotEqual(t, before, f.a.Key("x"), "the namespace moved to its next epoch")
	require.Equal(t, f.a.Key("x"), f.b.Key("x"), "both instances use the same epoch")
	lags.report(t)
	t.Logf("A: %+v", f.a.Stats())
	t.Logf("B: %+v", f.b.Stats())
}
