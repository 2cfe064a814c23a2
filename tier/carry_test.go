package tier_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// carryInstance is an instance whose queued leased writes are sent only by
// a later lease round trip or by Close (the timer waits an hour), and which
// reports each write it queues on the returned channel ("" namespace: the
// test's).
func carryInstance(t *testing.T, srv *redistest.Server, namespace string) (*tier.Cache[string], *redis.Client, <-chan struct{}) {
	t.Helper()
	c, rdb := instance(t, srv, tier.Options[string]{Namespace: namespace})
	queued := make(chan struct{}, 64)
	tier.SetCarryWrites(c, time.Hour, func() { queued <- struct{}{} })
	return c, rdb, queued
}

// holdsLease reports whether the L2 key of key on c holds a lease marker.
func holdsLease(t *testing.T, rdb *redis.Client, c *tier.Cache[string], key string) bool {
	t.Helper()
	b, err := rdb.Get(t.Context(), c.Key(key)).Bytes()
	require.NoError(t, err)
	return len(b) >= len(tier.LeasePrefix) && string(b[:len(tier.LeasePrefix)]) == tier.LeasePrefix
}

func constLoad(v string, n *atomic.Int64) tier.LoadFunc[string] {
	return counted(n, func(context.Context, string) (string, error) { return v, nil })
}

// The leased write of an answered load waits for the next miss's lease
// round trip, which carries it: two misses, two round trips (not four).
func TestCarry_NextLeaseCarriesWrite(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, rdb, queued := carryInstance(t, srv, "")
	b, _ := instance(t, srv, tier.Options[string]{})
	var loads atomic.Int64

	v, err := a.GetOrLoad(t.Context(), "k1", constLoad("v1", &loads))
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	<-queued
	require.True(t, holdsLease(t, rdb, a, "k1"), "the write waits in the queue, under k1's lease")
	_, err = b.Get(t.Context(), "k1")
	require.ErrorIs(t, err, tier.ErrNotFound, "another instance sees no value yet")

	_, err = a.GetOrLoad(t.Context(), "k2", constLoad("v2", &loads))
	require.NoError(t, err)
	// k2's lease round trip carried k1's write, and ended k1's flight,
	// before k2's load began: k1 is in L2 now.
	got, err := b.Get(t.Context(), "k1")
	require.NoError(t, err)
	require.Equal(t, "v1", got)
	<-queued // k2's own write waits in turn
	require.True(t, holdsLease(t, rdb, a, "k2"))
	s := a.Stats()
	require.Zero(t, s.L2Errors)
	require.Zero(t, s.LeaseLost)
	require.EqualValues(t, 2, loads.Load())

	// Close sends what is still queued.
	require.NoError(t, a.Close())
	got, err = b.Get(t.Context(), "k2")
	require.NoError(t, err)
	require.Equal(t, "v2", got)
}

// A Delete while the write waits in the queue fences it (I4): the carried
// write finds the lease gone, L2 keeps nothing, and the loaded value is
// taken back from L1.
func TestCarry_DeleteFencesQueuedWrite(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, rdb, queued := carryInstance(t, srv, "")
	b, _ := instance(t, srv, tier.Options[string]{})
	var loads atomic.Int64

	_, err := a.GetOrLoad(t.Context(), "k", constLoad("old", &loads))
	require.NoError(t, err)
	<-queued
	require.NoError(t, b.Delete(t.Context(), "k")) // another instance's write: removes the lease
	_, err = a.GetOrLoad(t.Context(), "other", constLoad("x", &loads))
	require.NoError(t, err)

	require.EqualValues(t, 1, a.Stats().LeaseLost)
	n, err := rdb.Exists(t.Context(), a.Key("k")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the fenced write left nothing in L2")
	tier.WaitL1(a)
	_, ok := a.GetIfPresent("k")
	require.False(t, ok, "the fenced value was taken back from L1")
	v, err := a.GetOrLoad(t.Context(), "k", constLoad("new", &loads))
	require.NoError(t, err)
	require.Equal(t, "new", v)
	require.EqualValues(t, 3, loads.Load())
}

// With no miss to carry it, a queued write is sent on its own after a
// fraction of a millisecond.
func TestCarry_SentAloneWithoutMisses(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, _ := instance(t, srv, tier.Options[string]{})
	b, _ := instance(t, srv, tier.Options[string]{})
	_, err := a.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) { return "v", nil })
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		v, err := b.Get(t.Context(), "k")
		return err == nil && v == "v"
	}, 10*time.Second, time.Millisecond)
	require.Zero(t, a.Stats().L2Errors)
}

// Close sends the writes still queued before it returns.
func TestCarry_CloseSendsQueuedWrites(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, _, queued := carryInstance(t, srv, "")
	b, _ := instance(t, srv, tier.Options[string]{})
	for _, k := range []string{"k1", "k2", "k3"} {
		_, err := a.GetOrLoad(t.Context(), k, func(context.Context, string) (string, error) { return "v-" + k, nil })
		require.NoError(t, err)
		<-queued
	}
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")
	for _, k := range []string{"k1", "k2", "k3"} {
		v, err := b.Get(t.Context(), k)
		require.NoError(t, err)
		require.Equal(t, "v-"+k, v)
	}
	require.Zero(t, a.Stats().L2Errors)
}

// A server that forgot the SetLeased script (SCRIPT FLUSH, as after a
// failover to a fresh replica) still gets the carried write.
func TestCarry_ScriptFlushedBeforeCarry(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, rdb, queued := carryInstance(t, srv, "")
	b, _ := instance(t, srv, tier.Options[string]{})
	var loads atomic.Int64
	_, err := a.GetOrLoad(t.Context(), "k1", constLoad("v1", &loads))
	require.NoError(t, err)
	<-queued
	require.NoError(t, rdb.ScriptFlush(t.Context()).Err())
	_, err = a.GetOrLoad(t.Context(), "k2", constLoad("v2", &loads))
	require.NoError(t, err)
	got, err := b.Get(t.Context(), "k1")
	require.NoError(t, err)
	require.Equal(t, "v1", got)
	require.Zero(t, a.Stats().L2Errors)
}

// A Delete while the write waits fences it on the path that sends it alone
// too (here Close's).
func TestCarry_DeleteFencesWriteSentAlone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, rdb, queued := carryInstance(t, srv, "")
	b, _ := instance(t, srv, tier.Options[string]{})
	_, err := a.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) { return "old", nil })
	require.NoError(t, err)
	<-queued
	require.NoError(t, b.Delete(t.Context(), "k"))
	require.NoError(t, a.Close())
	require.EqualValues(t, 1, a.Stats().LeaseLost)
	n, err := rdb.Exists(t.Context(), a.Key("k")).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// Close while a miss's lease round trip may be carrying the queued writes:
// whichever sends them, every write queued before Close reaches L2.
func TestCarry_CloseRacesACarryingMiss(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	keys := []string{"k1", "k2", "k3", "k4"}
	for round := range 20 {
		ns := "t-" + t.Name() + "-" + strconv.Itoa(round)
		a, _, queued := carryInstance(t, srv, ns)
		b, _ := instance(t, srv, tier.Options[string]{Namespace: ns})
		for _, k := range keys {
			_, err := a.GetOrLoad(context.Background(), k, func(context.Context, string) (string, error) { return "v-" + k, nil })
			require.NoError(t, err)
			<-queued
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = a.GetOrLoad(context.Background(), "carrier", func(context.Context, string) (string, error) { return "c", nil })
		}()
		require.NoError(t, a.Close())
		<-done
		for _, k := range keys {
			v, err := b.Get(t.Context(), k)
			require.NoError(t, err, "round %d, %s", round, k)
			require.Equal(t, "v-"+k, v)
		}
	}
}

// panickyCarrier is the goredis backend whose LeaseMany panics when it
// carries writes.
type panickyCarrier struct{ *goredis.Backend }

func (p panickyCarrier) LeaseMany(ctx context.Context, leases []tier.LeaseRequest, writes []tier.LeasedWrite) {
	if len(writes) > 0 {
		panic("carrier bug")
	}
	p.Backend.LeaseMany(ctx, leases, writes)
}

// A backend that panics carrying writes strands none of the flights it
// carried (I1): the miss that carried them panics, they end, and Close
// returns.
func TestCarry_PanickingCarrierStrandsNoFlight(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := tier.New(&tier.Options[string]{
		Namespace: "t-" + t.Name(), L2Timeout: 5 * time.Second,
		L2: panickyCarrier{goredis.Must(rdb, nil)},
	})
	require.NoError(t, err)
	queued := make(chan struct{}, 8)
	tier.SetCarryWrites(c, time.Hour, func() { queued <- struct{}{} })
	_, err = c.GetOrLoad(context.Background(), "k1", func(context.Context, string) (string, error) { return "v1", nil })
	require.NoError(t, err)
	<-queued
	require.PanicsWithValue(t, "carrier bug", func() {
		_, _ = c.GetOrLoad(context.Background(), "k2", func(context.Context, string) (string, error) { return "v2", nil })
	})
	require.EqualValues(t, 1, c.Stats().L2Errors, "k1's write failed")
	require.NoError(t, c.Close()) // would wait for k1's flight forever
}

// A Set while the previous load's write waits fences that write, and the
// Set's own value stays in L1: the lost lease takes back only what the
// flight put there, which the Set has replaced.
func TestCarry_SetWhileQueuedKeepsTheSetValue(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, rdb, queued := carryInstance(t, srv, "")
	var loads atomic.Int64
	_, err := a.GetOrLoad(t.Context(), "k", constLoad("old", &loads))
	require.NoError(t, err)
	<-queued
	require.NoError(t, a.Set(t.Context(), "k", "new", 0))
	_, err = a.GetOrLoad(t.Context(), "other", constLoad("x", &loads)) // carries k's write: fenced
	require.NoError(t, err)
	require.EqualValues(t, 1, a.Stats().LeaseLost)
	tier.WaitL1(a)
	v, ok := a.GetIfPresent("k")
	require.True(t, ok, "the Set's value is still in L1")
	require.Equal(t, "new", v)
	got, err := rdb.Get(t.Context(), a.Key("k")).Bytes()
	require.NoError(t, err)
	require.NotContains(t, string(got), tier.LeasePrefix)
}

// panicOnSet is an observer that panics once, when armed, at the start of
// an L2 set.
type panicOnSet struct {
	tier.NoopObserver
	armed atomic.Bool
}

func (o *panicOnSet) Begin(ctx context.Context, c tier.Call) context.Context {
	if c.Op == tier.OpL2Set && o.armed.CompareAndSwap(true, false) {
		panic("observer bug")
	}
	return ctx
}

// An observer that panics while a carried write is reported, on the
// goroutine of the miss whose lease round trip carried it, strands no
// flight: the panic reaches that miss's caller, the carried flight leaves
// the table anyway, and Close returns (it waited forever before).
func TestCarry_PanickingObserverStrandsNoFlight(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	obs := &panicOnSet{}
	c, _ := instance(t, srv, tier.Options[string]{Observer: obs})
	queued := make(chan struct{}, 64)
	tier.SetCarryWrites(c, time.Hour, func() { queued <- struct{}{} })
	var loads atomic.Int64
	_, err := c.GetOrLoad(t.Context(), "k1", constLoad("v1", &loads))
	require.NoError(t, err)
	<-queued // k1's write waits for the next miss's round trip
	obs.armed.Store(true)
	require.PanicsWithValue(t, "observer bug", func() {
		// A context that cannot end: the flight runs on this goroutine.
		_, _ = c.GetOrLoad(context.Background(), "k2", constLoad("v2", &loads))
	}, "k2's round trip carried k1's write, whose report panicked")
	require.False(t, obs.armed.Load(), "the observer did panic")
	require.NoError(t, c.Close(), "Close returns: no flight was stranded")
}

// closeWatcher is the goredis backend, watched: each SetLeasedMany's
// deadline and keys are recorded, and a LeaseMany that carries writes
// fails them once Close has begun to send the queue (see
// TestCarry_ClosePausedRedisWaitsOneL2Timeout).
type closeWatcher struct {
	*goredis.Backend
	mu        sync.Mutex
	deadlines []time.Time
	keys      []string
	carrying  chan struct{} // closed when a LeaseMany that carries writes has begun
	flushing  chan struct{} // closed when a SetLeasedMany has begun
	onceC     sync.Once
	onceF     sync.Once
}

// within waits for ch, or fails the test after a minute (a hang).
func within(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
	}
}

func (w *closeWatcher) LeaseMany(ctx context.Context, leases []tier.LeaseRequest, writes []tier.LeasedWrite) {
	if len(writes) == 0 {
		w.Backend.LeaseMany(ctx, leases, writes)
		return
	}
	// Held until Close sends the queue, so that the carried writes fail
	// once the queue is closed: they cannot be queued again.
	w.onceC.Do(func() { close(w.carrying) })
	select {
	case <-w.flushing:
	case <-time.After(time.Minute): // a hang: the test fails on what was sent
	}
	for i := range leases {
		leases[i].Err = context.Canceled
	}
	for i := range writes {
		writes[i].Err = context.Canceled
	}
}

func (w *closeWatcher) SetLeasedMany(ctx context.Context, writes []tier.LeasedWrite) {
	d, _ := ctx.Deadline()
	w.mu.Lock()
	w.deadlines = append(w.deadlines, d)
	for _, wr := range writes {
		w.keys = append(w.keys, wr.Key)
	}
	w.mu.Unlock()
	w.onceF.Do(func() { close(w.flushing) })
	w.Backend.SetLeasedMany(ctx, writes)
}

// With Redis paused, Close waits for the queued writes at most one
// L2Timeout, however many there are: every write Close sends (the queue's
// batches, and the writes a miss's round trip failed to carry while Close
// ran) goes out on one deadline, and a read that comes while Close sends
// them starts no L2 call of its own (ErrClosed). Before, each batch of 64
// had an L2Timeout of its own, one after the other, and each write a
// failed round trip had carried was sent alone with its own: up to 64
// L2Timeouts.
func TestCarry_ClosePausedRedisWaitsOneL2Timeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	w := &closeWatcher{Backend: goredis.Must(rdb, nil), carrying: make(chan struct{}), flushing: make(chan struct{})}
	c, err := tier.New(&tier.Options[string]{Namespace: "t-" + t.Name(), L2Timeout: 2 * time.Second, L2: w})
	require.NoError(t, err)
	const n = 130 // three batches: 64 carried by the miss below, 66 left for Close
	queued := make(chan struct{}, n)
	tier.SetCarryWrites(c, time.Hour, func() { queued <- struct{}{} })

	// n misses take their leases before any of them has a write to queue
	// (a lease round trip would carry it).
	loading, release := make(chan struct{}, n), make(chan struct{})
	var loads sync.WaitGroup
	for i := range n {
		loads.Go(func() {
			k := "k" + strconv.Itoa(i)
			_, err := c.GetOrLoad(context.Background(), k, func(context.Context, string) (string, error) {
				loading <- struct{}{}
				<-release
				return "v-" + k, nil
			})
			assert.NoError(t, err)
		})
	}
	for range n {
		within(t, loading, "a miss's load")
	}
	close(release)
	loads.Wait()
	for range n {
		within(t, queued, "a loaded value's write queued")
	}

	carried := make(chan struct{})
	go func() {
		defer close(carried)
		_, _ = c.GetOrLoad(context.Background(), "carrier", func(context.Context, string) (string, error) { return "c", nil })
	}()
	within(t, w.carrying, "the queued writes carried")
	srv.Pause()
	defer srv.Resume()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		assert.NoError(t, c.Close())
	}()
	within(t, w.flushing, "Close sending the queue")
	_, err = c.Get(context.Background(), "late")
	require.ErrorIs(t, err, tier.ErrClosed, "a read during Close")
	within(t, closed, "Close")
	within(t, carried, "the carrying miss")

	w.mu.Lock()
	defer w.mu.Unlock()
	// The queue's first batch and (unless the deadline came first) the
	// writes the miss failed to carry are sent; a batch whose turn comes
	// after the deadline fails unsent.
	require.NotEmpty(t, w.deadlines)
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(w.keys))), len(w.keys), "no write is sent twice")
	for _, d := range w.deadlines {
		require.Equal(t, w.deadlines[0], d, "every write Close sends has one deadline")
	}
	require.Zero(t, c.Stats().L2Errors, "failures while closing are not Redis's fault")
}
