package tier_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// gateCarrier is the goredis backend whose LeaseMany records the keys of
// each call; a call that leases holdKey closes entered and waits for gate,
// and, with panicOnBatch, a call of more than one lease panics.
type gateCarrier struct {
	*goredis.Backend
	holdKey       string
	panicOnBatch  bool
	entered, gate chan struct{}
	mu            sync.Mutex
	calls         [][]string
}

func (g *gateCarrier) LeaseMany(ctx context.Context, leases []tier.LeaseRequest, writes []tier.LeasedWrite) {
	keys := make([]string, len(leases))
	for i, l := range leases {
		keys[i] = l.Key
	}
	g.mu.Lock()
	g.calls = append(g.calls, keys)
	g.mu.Unlock()
	if slices.Contains(keys, g.holdKey) {
		close(g.entered)
		<-g.gate
		ctx = context.WithoutCancel(ctx) // held past its deadline: it still gets through
	}
	if g.panicOnBatch && len(leases) > 1 {
		panic("carrier bug")
	}
	g.Backend.LeaseMany(ctx, leases, writes)
}

// callsAfter returns the calls after the one that leased key.
func (g *gateCarrier) callsAfter(key string) [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, keys := range g.calls {
		if slices.Contains(keys, key) {
			return slices.Clone(g.calls[i+1:])
		}
	}
	return nil
}

// sharingInstance is a cache over gc with one lease round trip per shard
// at a time, whose L2 reads mostly miss (so that a miss leases first); it
// reports on the returned channel each miss that queues for a round trip.
func sharingInstance(t *testing.T, srv *redistest.Server, gc *gateCarrier, load tier.LoadFunc[string], o tier.Options[string]) (*tier.Cache[string], <-chan struct{}) {
	t.Helper()
	gc.Backend = goredis.Must(srv.Client(t), nil)
	gc.entered, gc.gate = make(chan struct{}), make(chan struct{})
	o.Namespace, o.L2 = "t-"+t.Name(), gc
	if o.L2Timeout == 0 {
		o.L2Timeout = 5 * time.Second
	}
	c := newCache(t, &o)
	queued := make(chan struct{}, 64) // the hook runs under the group's lock: it must not block
	tier.SetLeaseSharing(c, 1, func() { queued <- struct{}{} })
	gc.holdKey = c.Key("a")
	for i := range 8 {
		_, err := c.GetOrLoad(context.Background(), fmt.Sprint("warm-", i), load)
		require.NoError(t, err)
	}
	return c, queued
}

// queueBehindA reads a (its round trip held by gc), then b, c and d, which
// queue behind it, then lets a's round trip go.
func queueBehindA(gc *gateCarrier, queued <-chan struct{}, get func(key string)) {
	get("a")
	<-gc.entered // a's round trip is on its way
	for _, k := range []string{"b", "c", "d"} {
		get(k)
	}
	for range 3 {
		<-queued
	}
	close(gc.gate)
}

// The misses that come while a lease round trip is on its way share the
// next one, and each gets its own outcome: a lease taken (then its load,
// its value written to L2), or the value another instance stored.
func TestLeaseSharing_ConcurrentMissesShareARoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var loads atomic.Int64
	load := counted(&loads, func(_ context.Context, k string) (string, error) { return "v-" + k, nil })
	gc := &gateCarrier{}
	c, queued := sharingInstance(t, srv, gc, load, tier.Options[string]{})
	other, _ := instance(t, srv, tier.Options[string]{Namespace: "t-" + t.Name()})
	require.NoError(t, other.Set(t.Context(), "c", "stored", time.Minute))
	before := loads.Load()

	got := make(map[string]string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	get := func(k string) {
		wg.Go(func() {
			v, err := c.GetOrLoad(context.Background(), k, load)
			assert.NoError(t, err)
			mu.Lock()
			got[k] = v
			mu.Unlock()
		})
	}
	queueBehindA(gc, queued, get)
	wg.Wait()

	require.Equal(t, map[string]string{"a": "v-a", "b": "v-b", "c": "stored", "d": "v-d"}, got)
	require.Equal(t, before+3, loads.Load(), "c came from L2")
	after := gc.callsAfter(c.Key("a"))
	require.NotEmpty(t, after)
	require.ElementsMatch(t, []string{c.Key("b"), c.Key("c"), c.Key("d")}, after[0], "one round trip for the three")
	require.NoError(t, c.Close()) // sends the queued writes
	for _, k := range []string{"a", "b", "d"} {
		v, err := other.Get(t.Context(), k)
		require.NoError(t, err)
		require.Equal(t, "v-"+k, v)
	}
}

// A carrier that panics sending a batch answers every call in it: the
// sender's caller panics, the others load from the origin, and the shard's
// next miss gets a round trip of its own.
func TestLeaseSharing_PanickingCarrierAnswersEveryCall(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	load := func(_ context.Context, k string) (string, error) { return "v-" + k, nil }
	gc := &gateCarrier{panicOnBatch: true}
	c, queued := sharingInstance(t, srv, gc, load, tier.Options[string]{})

	var panics, answers atomic.Int64
	var wg sync.WaitGroup
	get := func(k string) {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					assert.Equal(t, "carrier bug", r)
					panics.Add(1)
				}
			}()
			v, err := c.GetOrLoad(context.Background(), k, load)
			assert.NoError(t, err)
			assert.Equal(t, "v-"+k, v)
			answers.Add(1)
		})
	}
	queueBehindA(gc, queued, get)
	wg.Wait()
	require.EqualValues(t, 1, panics.Load(), "the batch's sender")
	require.EqualValues(t, 3, answers.Load(), "a, and the two others from the origin")

	v, err := c.GetOrLoad(context.Background(), "e", load)
	require.NoError(t, err)
	require.Equal(t, "v-e", v)
	require.Equal(t, []string{c.Key("e")}, gc.callsAfter(c.Key("a"))[1], "the shard's trip was given back")
}

// A miss whose deadline ends while it waits for a round trip was never
// sent: it loads from the origin, and neither the L2 error count nor the
// breaker (here opened by a single failure) counts it against the shard.
func TestLeaseSharing_DeadlineInQueueIsNotAShardFailure(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	load := func(_ context.Context, k string) (string, error) { return "v-" + k, nil }
	gc := &gateCarrier{}
	c, queued := sharingInstance(t, srv, gc, load, tier.Options[string]{L2Timeout: time.Second, BreakerFailures: 1})
	a := make(chan string)
	go func() {
		v, err := c.GetOrLoad(context.Background(), "a", load)
		assert.NoError(t, err)
		a <- v
	}()
	<-gc.entered // a's round trip is held past every deadline
	before := c.Stats()
	b := make(chan string)
	go func() {
		v, err := c.GetOrLoad(context.Background(), "b", load)
		assert.NoError(t, err)
		b <- v
	}()
	<-queued
	require.Equal(t, "v-b", <-b, "b's deadline ended in the queue: it loaded without a lease")
	after := c.Stats()
	require.Equal(t, before.L2Errors, after.L2Errors, "nothing was sent")
	require.Equal(t, tier.BreakerClosed, after.Breaker)
	require.Equal(t, before.Fallbacks+1, after.Fallbacks, "b fell back")
	close(gc.gate)
	require.Equal(t, "v-a", <-a)
	require.Empty(t, gc.callsAfter(c.Key("a")), "b was never sent")
}

// A paused Redis strands no miss of a shard whose round trips are shared:
// the one on its way fails at its deadline, those queued behind it leave
// the queue at theirs, every caller gets the origin's value, and once Redis
// answers again the shard sends and stores as before.
func TestLeaseSharing_PausedRedisStrandsNoCall(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	load := func(_ context.Context, k string) (string, error) { return "v-" + k, nil }
	gc := &gateCarrier{}
	c, _ := sharingInstance(t, srv, gc, load, tier.Options[string]{L2Timeout: 300 * time.Millisecond, BreakerFailures: 1000})

	srv.Pause()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			k := fmt.Sprint("paused-", i)
			v, err := c.GetOrLoad(context.Background(), k, load)
			assert.NoError(t, err)
			assert.Equal(t, "v-"+k, v)
		})
	}
	wg.Wait()
	srv.Resume()

	v, err := c.GetOrLoad(context.Background(), "after", load)
	require.NoError(t, err)
	require.Equal(t, "v-after", v)
	require.NoError(t, c.Close()) // sends the queued write
	other, _ := instance(t, srv, tier.Options[string]{Namespace: "t-" + t.Name()})
	v, err = other.Get(t.Context(), "after")
	require.NoError(t, err, "the shard took the lease and the write after Redis came back")
	require.Equal(t, "v-after", v)
}
