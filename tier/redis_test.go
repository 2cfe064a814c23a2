package tier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// instance is one application instance: its own Redis client and cache.
func instance[V any](t *testing.T, srv *redistest.Server, o tier.Options[V]) (*tier.Cache[V], *redis.Client) {
	t.Helper()
	rdb := srv.Client(t)
	if o.Namespace == "" {
		o.Namespace = "t-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if o.L2Timeout == 0 {
		// Generous: these tests are about what the cache does, not about a
		// slow Redis. With the default 100 ms, a busy machine (-race, 2
		// cores shared) made New's epoch read time out, and the cache then
		// left L2 unused ("epoch read timed out"). Tests about timeouts set
		// their own.
		o.L2Timeout = 5 * time.Second
	}
	o.L2 = goredis.Must(rdb, &goredis.Options{MaxValueBytes: o.MaxValueBytes})
	return newCache(t, &o), rdb
}

func TestCache_L2_SharedBetweenInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, _ := instance(t, srv, tier.Options[*profile]{L2Timeout: 5 * time.Second})
	b, _ := instance(t, srv, tier.Options[*profile]{L2Timeout: 5 * time.Second})
	var loads atomic.Int64
	load := counted(&loads, func(_ context.Context, key string) (*profile, error) {
		return &profile{ID: 1, Name: key, Tags: []string{"x"}}, nil
	})
	v, err := a.GetOrLoad(t.Context(), "user:1", load)
	require.NoError(t, err)
	require.Eventually(t, func() bool { // A writes L2 after answering its callers
		w, err := b.Get(t.Context(), "user:1")
		return err == nil && w.Name == v.Name
	}, 5*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 1, loads.Load())
	require.EqualValues(t, 1, b.Stats().L2Hits)

	// A negative entry is shared too.
	_, err = a.GetOrLoad(t.Context(), "user:404", func(context.Context, string) (*profile, error) { return nil, tier.ErrNotFound })
	require.ErrorIs(t, err, tier.ErrNotFound)
	require.Eventually(t, func() bool {
		_, err := b.GetOrLoad(t.Context(), "user:404", func(context.Context, string) (*profile, error) {
			return &profile{}, nil // must not be called once the negative entry is in L2
		})
		return errors.Is(err, tier.ErrNotFound)
	}, 5*time.Second, 5*time.Millisecond)
}

func TestCache_L2_BadBytesAreAMiss(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rec := &recorder{}
	c, rdb := instance(t, srv, tier.Options[*profile]{Observer: rec, Schema: 3, L2Timeout: 5 * time.Second})
	valid := func(schema uint32, payload []byte) []byte {
		h := codec.Header{Codec: codec.Msgpack().ID(), Schema: schema, Created: time.Now().UnixNano(), SoftExpiry: time.Now().Add(time.Hour).UnixNano(), Deadline: time.Now().Add(time.Hour).UnixNano()}
		b, err := codec.Encode(codec.Msgpack(), h, nil, 0)
		require.NoError(t, err)
		return append(b[:codec.HeaderSize], payload...)
	}
	tests := []struct {
		name  string
		plant func(key string) error
	}{
		{name: "garbage", plant: func(k string) error { return rdb.Set(t.Context(), k, "\x00\x01garbage\xff", time.Hour).Err() }},
		{name: "msgpack array32 bomb", plant: func(k string) error { return rdb.Set(t.Context(), k, "\xdd\xff\xff\xff\xff", time.Hour).Err() }},
		{name: "bomb inside a valid envelope", plant: func(k string) error {
			return rdb.Set(t.Context(), k, valid(tier.WireSchema(c), []byte{0x8a, 0xa4, 't', 'a', 'g', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}), time.Hour).Err()
		}},
		{name: "truncated", plant: func(k string) error {
			return rdb.Set(t.Context(), k, valid(tier.WireSchema(c), nil)[:20], time.Hour).Err()
		}},
		{name: "older schema", plant: func(k string) error {
			return rdb.Set(t.Context(), k, valid(2, []byte{0x80}), time.Hour).Err()
		}},
		{name: "foreign JSON", plant: func(k string) error { return rdb.Set(t.Context(), k, `{"id":1}`, time.Hour).Err() }},
		{name: "wrong Redis type", plant: func(k string) error { return rdb.RPush(t.Context(), k, "a").Err() }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("user:%d", i)
			require.NoError(t, tt.plant(c.Key(key)))
			before := rec.Count(tier.EventDecodeError)
			v, err := c.GetOrLoad(t.Context(), key, func(context.Context, string) (*profile, error) {
				return &profile{ID: int64(i)}, nil
			})
			require.NoError(t, err)
			require.EqualValues(t, i, v.ID, "the origin answered")
			require.Equal(t, before+1, rec.Count(tier.EventDecodeError), "the observer heard a decode error")
			// The bad bytes are gone: replaced by the loaded value.
			require.Eventually(t, func() bool {
				b, err := rdb.Get(t.Context(), c.Key(key)).Bytes()
				if err != nil {
					return false
				}
				var p profile
				_, err = codec.Decode(codec.Msgpack(), b, tier.WireSchema(c), 0, &p)
				return err == nil && p.ID == int64(i)
			}, 5*time.Second, 5*time.Millisecond)
		})
	}
	require.EqualValues(t, len(tests), c.Stats().DecodeErrors)
}

func TestCache_L2_OversizedValueRefusedBeforeReading(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rec := &recorder{}
	c, rdb := instance(t, srv, tier.Options[string]{Observer: rec, MaxValueBytes: 1024})
	require.NoError(t, rdb.Set(t.Context(), c.Key("big"), strings.Repeat("x", 1<<20), time.Hour).Err())
	v, err := c.GetOrLoad(t.Context(), "big", func(context.Context, string) (string, error) { return "small", nil })
	require.NoError(t, err)
	require.Equal(t, "small", v)
	var tooLarge *tier.ValueTooLargeError
	found := false
	for _, e := range rec.Events() {
		if e.Kind == tier.EventDecodeError && errors.As(e.Err, &tooLarge) {
			found = true
			require.Equal(t, 1024+64+1, tooLarge.Size, "GETRANGE read at most limit + lease slack (64) + 1 bytes")
		}
	}
	require.True(t, found)
}

func TestCache_L2_Stampede_TwoInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Generous timeouts: an L2 call cut by a busy machine would make an
	// instance load without the lease.
	a, _ := instance(t, srv, tier.Options[int]{LeaseWait: 10 * time.Second, L2Timeout: 5 * time.Second})
	b, _ := instance(t, srv, tier.Options[int]{LeaseWait: 10 * time.Second, L2Timeout: 5 * time.Second})
	var loads atomic.Int64
	load := counted(&loads, func(context.Context, string) (int, error) {
		time.Sleep(50 * time.Millisecond) // a slow query, so the callers really overlap
		return 42, nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, 2000)
	for _, c := range []*tier.Cache[int]{a, b} {
		for range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := c.GetOrLoad(t.Context(), "hot", load)
				if err == nil && v != 42 {
					err = fmt.Errorf("got %d", v)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, loads.Load(), "one origin load across both instances")
	// The other instance either waited on the lease or (when it came late)
	// found the value in L2.
	sa, sb := a.Stats(), b.Stats()
	require.Positive(t, sa.LeaseWaits+sb.LeaseWaits+sa.L2Hits+sb.L2Hits)
	t.Logf("lease waits %d, L2 hits %d", sa.LeaseWaits+sb.LeaseWaits, sa.L2Hits+sb.L2Hits)
}

// TestCache_L2_FencedLoad is the deterministic race of a load that read v1,
// an update to v2 with its Delete, then the load finishing: neither tier
// may end up holding v1.
func TestCache_L2_FencedLoad(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Generous L2 timeouts: this test is about the fence, not about a slow
	// Redis (a lease not taken in time is a different, documented path).
	a, rdb := instance(t, srv, tier.Options[string]{L2Timeout: 5 * time.Second})
	b, _ := instance(t, srv, tier.Options[string]{L2Timeout: 5 * time.Second})
	for i := range 100 {
		key := fmt.Sprintf("k%d", i)
		var db atomic.Value
		db.Store("v1")
		read := func(context.Context, string) (string, error) { return db.Load().(string), nil }
		inLoad, release := make(chan struct{}), make(chan struct{})
		got := make(chan string, 1)
		go func() {
			v, _ := a.GetOrLoad(context.Background(), key, func(ctx context.Context, k string) (string, error) {
				v, err := read(ctx, k)
				close(inLoad)
				<-release
				return v, err
			})
			got <- v
		}()
		<-inLoad
		db.Store("v2")
		require.NoError(t, b.Delete(t.Context(), key)) // the writer is another instance
		close(release)
		require.Equal(t, "v1", <-got)
		// Wait until A's flight has finished its writes.
		require.Eventually(t, func() bool { return a.Stats().LeaseLost == uint64(i+1) }, 5*time.Second, time.Millisecond)
		n, err := rdb.Exists(t.Context(), a.Key(key)).Result()
		require.NoError(t, err)
		require.Zero(t, n, "L2 does not hold v1")
		for _, c := range []*tier.Cache[string]{a, b} {
			v, err := c.GetOrLoad(t.Context(), key, read)
			require.NoError(t, err)
			require.Equal(t, "v2", v)
		}
	}
}

func TestCache_L2_Tags(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// One fake clock for the three instances: the invalidation comes after
	// the value's creation plus the allowed skew because the test says so,
	// not because the test slept long enough.
	clock := newFakeClock()
	o := tier.Options[[]string]{MaxClockSkew: time.Millisecond, L2Timeout: 5 * time.Second, Clock: clock}
	a, _ := instance(t, srv, o)
	b, _ := instance(t, srv, o)
	var list atomic.Value
	list.Store([]string{"09:00"})
	load := func(context.Context, string) ([]string, error) { return list.Load().([]string), nil }
	tags := []string{"expert:42"}
	v, err := a.GetOrLoadTagged(t.Context(), "expert:42:day:2026-11-26", tags, load)
	require.NoError(t, err)
	require.Equal(t, []string{"09:00"}, v)
	require.Eventually(t, func() bool { _, err := b.Get(t.Context(), "expert:42:day:2026-11-26"); return err == nil }, 5*time.Second, time.Millisecond)

	clock.Advance(5 * time.Millisecond) // past the value's creation plus the allowed skew
	list.Store([]string{"09:00", "10:00"})
	require.NoError(t, a.InvalidateTags(t.Context(), "expert:42"))
	// A third instance, which never heard the invalidation, reads the tag's
	// time from L2 with the value and does not serve the old list.
	c, _ := instance(t, srv, o)
	v, err = c.GetOrLoadTagged(t.Context(), "expert:42:day:2026-11-26", tags, load)
	require.NoError(t, err)
	require.Equal(t, []string{"09:00", "10:00"}, v)
	v, err = a.GetOrLoadTagged(t.Context(), "expert:42:day:2026-11-26", tags, load)
	require.NoError(t, err)
	require.Equal(t, []string{"09:00", "10:00"}, v, "the invalidating instance's own L1 dropped it")
}

// TestCache_L2_RedisKilled: Redis dies in the middle of 10k reads and comes
// back empty. Callers see no error, the breaker opens, then closes and L2
// fills again. The slowest call is logged, not asserted: on a busy machine
// it measures the scheduler (514 ms and 636 ms were seen with a 50 ms
// L2Timeout and an instant origin); BenchmarkCache_L2Down measures the
// wait of a read while L2 is down.
func TestCache_L2_RedisKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	const l2Timeout = 50 * time.Millisecond
	rec := &recorder{}
	c, rdb := instance(t, srv, tier.Options[int]{
		Observer: rec, L2Timeout: l2Timeout, BreakerFailures: 3, BreakerCooldown: 200 * time.Millisecond,
		L1TTL: time.Millisecond, TTL: time.Minute, // L1 expires at once: every read goes to L2
	})
	l2InUse(t, c)
	load := func(_ context.Context, key string) (int, error) { return len(key), nil }
	var maxWait time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errCount atomic.Int64
	const calls = 10000
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				v, err := c.GetOrLoad(t.Context(), fmt.Sprintf("key:%d", i%500), load)
				d := time.Since(t0)
				if err != nil || v != len(fmt.Sprintf("key:%d", i%500)) {
					errCount.Add(1)
				}
				mu.Lock()
				maxWait = max(maxWait, d)
				mu.Unlock()
			}
		}()
	}
	for i := range calls {
		if i == calls/3 {
			srv.Kill()
		}
		if i == 2*calls/3 {
			srv.Restart()
		}
		work <- i
	}
	close(work)
	wg.Wait()
	require.Zero(t, errCount.Load(), "no caller saw an error")
	require.GreaterOrEqual(t, c.Stats().BreakerOpens, uint64(1), "the breaker opened")
	t.Logf("slowest call: %v (L2Timeout %v)", maxWait, l2Timeout)

	require.Eventually(t, func() bool {
		_, _ = c.GetOrLoad(t.Context(), "after", load)
		return c.Stats().Breaker == tier.BreakerClosed && rdb.Exists(t.Context(), c.Key("after")).Val() == 1
	}, 10*time.Second, 20*time.Millisecond, "the breaker closed and L2 fills again")
	require.Positive(t, rec.Count(tier.EventFallback))
	t.Logf("origin loads during the run: %d of %d calls; fallbacks %d", c.Stats().Loads, calls, c.Stats().Fallbacks)
}

// A cache whose L2 reads mostly miss takes the lease in its first round
// trip (the get-or-lease script): a miss costs one round trip before the
// load, not two. Once reads mostly hit, the first round trip is a plain
// read again.
func TestCache_L2_FirstRoundTripFollowsHitRatio(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rec := &recorder{}
	a, _ := instance(t, srv, tier.Options[*profile]{Observer: rec, ObserveRawKeys: true})
	ctx := context.Background()
	var loads atomic.Int64
	load := counted(&loads, func(_ context.Context, key string) (*profile, error) { return &profile{Name: key}, nil })

	for i := range 100 { // cold keys: every L2 read misses
		_, err := a.GetOrLoad(ctx, fmt.Sprint("warmup-", i), load)
		require.NoError(t, err)
	}
	gets, leases := rec.Ops(tier.OpL2Get), rec.Ops(tier.OpL2Lease)
	for i := range 50 {
		v, err := a.GetOrLoad(ctx, fmt.Sprint("cold-", i), load)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("cold-", i), v.Name)
	}
	require.Equal(t, int64(150), loads.Load())
	require.Equal(t, 0, rec.Ops(tier.OpL2Get)-gets, "no plain read before the lease once reads mostly miss")
	require.Equal(t, 50, rec.Ops(tier.OpL2Lease)-leases, "one get-or-lease round trip per miss")

	// The values are in L2 now: with L1 dropped, reads are L2 hits.
	a.DropLocal(ctx)
	for i := range 100 {
		_, err := a.GetOrLoad(ctx, fmt.Sprint("warmup-", i), load)
		require.NoError(t, err)
	}
	require.Equal(t, int64(150), loads.Load(), "every read was an L2 hit")
	gets, leases = rec.Ops(tier.OpL2Get), rec.Ops(tier.OpL2Lease)
	a.DropLocal(ctx)
	for i := range 50 {
		_, err := a.GetOrLoad(ctx, fmt.Sprint("cold-", i), load)
		require.NoError(t, err)
	}
	require.Equal(t, 50, rec.Ops(tier.OpL2Get)-gets, "a plain read once reads mostly hit")
	require.Equal(t, 0, rec.Ops(tier.OpL2Lease)-leases)
	require.Equal(t, int64(150), loads.Load())
}

// A caller whose deadline is shorter than L2Timeout does not make the
// flight's L2 read on its own goroutine (its deadline would cut the read
// and, in go-redis, close the connection): it gives up on time, the callers
// waiting on the same flight still get L2's value, and nothing counts
// against the breaker.
func TestCache_L2_LeaderGivesUpDuringFirstRead(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// L2Timeout is far longer than the test: a caller that waited for the
	// paused Redis could not return before the Resume below.
	o := tier.Options[*profile]{L2Timeout: time.Minute, LoadTimeout: 2 * time.Minute, BreakerFailures: 1}
	a, _ := instance(t, srv, o)
	inRead := make(chan struct{})
	o.Observer, o.ObserveRawKeys = &hookObserver{op: tier.OpL2Get, key: "k", hook: func() { close(inRead) }}, true
	b, _ := instance(t, srv, o) // empty L1: reads go to L2
	ctx := context.Background()
	require.NoError(t, a.Set(ctx, "k", &profile{Name: "stored"}, time.Minute))
	var loads atomic.Int64
	load := counted(&loads, func(context.Context, string) (*profile, error) { return &profile{Name: "loaded"}, nil })

	srv.Pause()
	leaderErr := make(chan error, 1)
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := b.GetOrLoad(lctx, "k", load)
		leaderErr <- err
	}()
	<-inRead // the leader's flight is in its read (Redis is paused)
	type res struct {
		v   *profile
		err error
	}
	waiter := make(chan res, 1)
	go func() {
		v, err := b.GetOrLoad(ctx, "k", load)
		waiter <- res{v, err}
	}()
	select {
	case err := <-leaderErr:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(30 * time.Second): // a watchdog, well under L2Timeout
		t.Fatal("the leader waited for the paused Redis instead of its 50 ms deadline")
	}
	// Resume only once the waiter is on the flight (a miss is counted
	// after the caller joined it): the waiter must get L2's value through
	// the flight the leader left, not through a read of its own.
	require.Eventually(t, func() bool { return b.Stats().Misses == 2 }, 5*time.Second, time.Millisecond)
	srv.Resume()
	r := <-waiter
	require.NoError(t, r.err)
	require.Equal(t, "stored", r.v.Name, "the waiter got L2's value")
	require.Zero(t, loads.Load())
	st := b.Stats()
	require.Zero(t, st.L2Errors, "the leader's deadline is not Redis's failure")
	require.Zero(t, st.BreakerOpens)
}

// panickyObserver panics in the first Begin of an L2 read, after release
// is closed. It closes reached when that Begin starts.
type panickyObserver struct {
	tier.NoopObserver
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *panickyObserver) Begin(ctx context.Context, c tier.Call) context.Context {
	if c.Op == tier.OpL2Get {
		p.once.Do(func() {
			close(p.reached)
			<-p.release
			panic("observer bug")
		})
	}
	return ctx
}

// A panic on the leader's goroutine during its inline L2 read (here in an
// Observer) reaches the leader; the callers waiting on the same flight get
// an error instead of waiting forever, the next read works, and Close does
// not hang.
func TestCache_L2_LeaderPanicDoesNotStrandWaiters(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	obs := &panickyObserver{reached: make(chan struct{}), release: make(chan struct{})}
	c, _ := instance(t, srv, tier.Options[*profile]{Observer: obs, ObserveRawKeys: true})
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", &profile{Name: "v"}, time.Minute))
	c.DropLocal(ctx)

	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		_, _ = c.Get(ctx, "k")
	}()
	<-obs.reached // the leader is blocked in Begin
	misses := c.Stats().Misses
	waiter := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k")
		waiter <- err
	}()
	// A miss is counted once the caller joined the flight.
	require.Eventually(t, func() bool { return c.Stats().Misses == misses+1 }, 5*time.Second, time.Millisecond, "the waiter joined the flight")
	close(obs.release)
	require.Equal(t, "observer bug", <-leader)
	select {
	case err := <-waiter:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was stranded")
	}
	v, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", v.Name)
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
}

// hookObserver runs hook once, in Begin of the first call of op on key
// (raw keys: use it with ObserveRawKeys).
type hookObserver struct {
	tier.NoopObserver
	op   tier.Op
	key  string
	once sync.Once
	hook func()
}

func (h *hookObserver) Begin(ctx context.Context, c tier.Call) context.Context {
	if c.Op == h.op && c.Key == h.key {
		h.once.Do(h.hook)
	}
	return ctx
}

// A read that begins after Delete (or InvalidateAll) dropped the local copy
// but before the L2 step reads the old value from L2 into L1. Once the call
// returns, that copy must not be served: the write drops it again after the
// L2 step. The read is made from the observer's Begin of the L2 step, so
// the interleaving is exact.
func TestCache_L2_ReadDuringWriteDoesNotSurviveIt(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name  string
		op    tier.Op
		key   string // the L2 step's key as the observer sees it
		write func(context.Context, *tier.Cache[*profile]) error
	}{
		{name: "delete", op: tier.OpL2Delete, key: "k", write: func(ctx context.Context, c *tier.Cache[*profile]) error { return c.Delete(ctx, "k") }},
		{name: "invalidate all", op: tier.OpL2Set, key: "", write: func(ctx context.Context, c *tier.Cache[*profile]) error { return c.InvalidateAll(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := "t-readduring-" + strings.ReplaceAll(tt.name, " ", "-")
			writer, _ := instance(t, srv, tier.Options[*profile]{Namespace: ns})
			ctx := context.Background()
			require.NoError(t, writer.Set(ctx, "k", &profile{Name: "old"}, time.Minute))
			obs := &hookObserver{op: tt.op, key: tt.key}
			c, _ := instance(t, srv, tier.Options[*profile]{Namespace: ns, Observer: obs, ObserveRawKeys: true})
			load := func(context.Context, string) (*profile, error) { return &profile{Name: "new"}, nil }
			obs.hook = func() {
				v, err := c.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
				require.Equal(t, "old", v.Name, "the read saw L2 before the write's L2 step")
				require.Eventually(t, func() bool { // and the old value is in L1
					v, ok := c.GetIfPresent("k")
					return ok && v.Name == "old"
				}, 5*time.Second, time.Millisecond)
			}
			require.NoError(t, tt.write(ctx, c))
			// An observation window: the old copy's L1 write may be queued
			// in ristretto; it must not show up.
			require.Never(t, func() bool { _, ok := c.GetIfPresent("k"); return ok }, 20*time.Millisecond, time.Millisecond,
				"L1 serves the old value after the write returned")
			v, err := c.GetOrLoad(ctx, "k", load)
			require.NoError(t, err)
			require.Equal(t, "new", v.Name)
		})
	}
}

// A caller with a stale value gets it after SoftTimeout even when L2 is
// stuck: its read is not made on its own goroutine. Redis stays paused
// until the caller has its answer, and L2Timeout is longer than the test,
// so the answer cannot have waited for L2.
func TestCache_L2_SoftTimeoutWhileL2Stuck(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clock := newFakeClock()
	c, _ := instance(t, srv, tier.Options[*profile]{
		Clock: clock, TTL: time.Minute, Jitter: tier.NoJitter, FailSafe: time.Hour,
		SoftTimeout: 20 * time.Millisecond, L2Timeout: time.Minute, LoadTimeout: 2 * time.Minute,
	})
	ctx := context.Background()
	var n atomic.Int64
	load := func(context.Context, string) (*profile, error) { return &profile{Name: fmt.Sprint(n.Add(1))}, nil }
	_, err := c.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := c.GetIfPresent("k"); return ok }, 5*time.Second, time.Millisecond)
	clock.Advance(2 * time.Minute) // the L1 copy is stale, within FailSafe
	srv.Pause()
	type res struct {
		v   *profile
		err error
	}
	got := make(chan res, 1)
	t0 := time.Now()
	go func() {
		v, err := c.GetOrLoad(ctx, "k", load)
		got <- res{v, err}
	}()
	var r res
	select {
	case r = <-got:
	case <-time.After(30 * time.Second): // a watchdog, well under L2Timeout
		srv.Resume()
		t.Fatal("the caller waited for the paused Redis instead of SoftTimeout")
	}
	t.Logf("stale value after %v (SoftTimeout 20 ms) while Redis was paused", time.Since(t0))
	srv.Resume()
	require.NoError(t, r.err)
	require.Equal(t, "1", r.v.Name, "the stale value")
}

// In get-or-lease mode, bad bytes under a key (garbage, a value over the
// limit, another Redis type) are reported, deleted and replaced under a
// lease: the loaded value reaches L2 (another instance reads it without
// loading), as after a plain read that found them.
func TestCache_L2_LeaseFirstReplacesBadBytes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name  string
		plant func(ctx context.Context, rdb *redis.Client, key string) error
	}{
		{name: "garbage", plant: func(ctx context.Context, rdb *redis.Client, key string) error {
			return rdb.Set(ctx, key, "\xc1garbage", time.Minute).Err()
		}},
		{name: "too large", plant: func(ctx context.Context, rdb *redis.Client, key string) error {
			return rdb.Set(ctx, key, strings.Repeat("x", 4096), time.Minute).Err()
		}},
		{name: "another type", plant: func(ctx context.Context, rdb *redis.Client, key string) error {
			return rdb.RPush(ctx, key, "x").Err()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			ns := "t-lease-first-bad-" + strings.ReplaceAll(tt.name, " ", "-")
			o := tier.Options[*profile]{Namespace: ns, MaxValueBytes: 1024}
			o.Observer = rec
			a, rdb := instance(t, srv, o)
			ctx := context.Background()
			var loads atomic.Int64
			load := counted(&loads, func(_ context.Context, key string) (*profile, error) { return &profile{Name: key}, nil })
			for i := range 100 { // cold keys: the cache moves to get-or-lease first
				_, err := a.GetOrLoad(ctx, fmt.Sprint("warmup-", i), load)
				require.NoError(t, err)
			}
			require.NoError(t, tt.plant(ctx, rdb, a.Key("bad")))
			v, err := a.GetOrLoad(ctx, "bad", load)
			require.NoError(t, err)
			require.Equal(t, "bad", v.Name)
			require.Equal(t, 1, rec.Count(tier.EventDecodeError))
			require.Eventually(t, func() bool { // the leased write is off the caller's path
				b, err := rdb.Get(ctx, a.Key("bad")).Bytes()
				var p profile
				_, derr := codec.Decode(codec.Msgpack(), b, tier.WireSchema(a), 0, &p)
				return err == nil && derr == nil && p.Name == "bad"
			}, 10*time.Second, 5*time.Millisecond, "L2 holds the loaded value")
			o.Observer = nil
			b, _ := instance(t, srv, o)
			n := loads.Load()
			v, err = b.GetOrLoad(ctx, "bad", load)
			require.NoError(t, err)
			require.Equal(t, "bad", v.Name)
			require.Equal(t, n, loads.Load(), "another instance reads it from L2")
		})
	}
}

// endHookObserver runs hook once, in End of the first call of op on key
// (raw keys).
type endHookObserver struct {
	tier.NoopObserver
	op   tier.Op
	key  string
	once sync.Once
	hook func()
}

func (h *endHookObserver) End(_ context.Context, c tier.Call, _ tier.Result) {
	if c.Op == h.op && c.Key == h.key {
		h.once.Do(h.hook)
	}
}

// A Delete that runs completely between Set's L2 write and Set's return
// wins: after both returned, neither L1 nor L2 holds Set's value (the
// order Set-then-Delete), not L1 alone.
func TestCache_L2_DeleteDuringSetWins(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	obs := &endHookObserver{op: tier.OpL2Set, key: "k"}
	c, rdb := instance(t, srv, tier.Options[*profile]{Observer: obs, ObserveRawKeys: true})
	ctx := context.Background()
	obs.hook = func() { require.NoError(t, c.Delete(ctx, "k")) }
	require.NoError(t, c.Set(ctx, "k", &profile{Name: "new"}, time.Minute))
	// An observation window: Set's L1 write must not show up after Delete.
	require.Never(t, func() bool { _, ok := c.GetIfPresent("k"); return ok }, 20*time.Millisecond, time.Millisecond,
		"L1 serves Set's value after Set-then-Delete")
	require.Zero(t, rdb.Exists(ctx, c.Key("k")).Val(), "L2 holds nothing")
}

// A cached "not found" that answers a read from L2 is reported
// (EventNegativeHit, on the tier it came from) and counted; one in L1 is
// only counted, like every L1 hit.
func TestCache_L2_NegativeHitReported(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	notFound := func(context.Context, string) (string, error) { return "", tier.ErrNotFound }
	a, rdb := instance(t, srv, tier.Options[string]{L2Timeout: 5 * time.Second})
	_, err := a.GetOrLoad(t.Context(), "gone", notFound)
	require.ErrorIs(t, err, tier.ErrNotFound)
	require.Eventually(t, func() bool { return rdb.Exists(t.Context(), a.Key("gone")).Val() == 1 }, 5*time.Second, time.Millisecond)

	rec := &recorder{}
	b, _ := instance(t, srv, tier.Options[string]{L2Timeout: 5 * time.Second, Observer: rec})
	_, err = b.GetOrLoad(t.Context(), "gone", func(context.Context, string) (string, error) {
		t.Error("loader called: the negative entry is in L2")
		return "", nil
	})
	require.ErrorIs(t, err, tier.ErrNotFound)
	require.Equal(t, 1, rec.Count(tier.EventNegativeHit))
	for _, e := range rec.Events() {
		if e.Kind == tier.EventNegativeHit {
			require.Equal(t, tier.TierL2, e.Tier)
		}
	}
	require.EqualValues(t, 1, b.Stats().NegativeHits)

	require.Eventually(t, func() bool { // now from L1
		_, err := b.GetOrLoad(t.Context(), "gone", notFound)
		return errors.Is(err, tier.ErrNotFound) && b.Stats().L1Hits > 0
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, rec.Count(tier.EventNegativeHit), "an L1 hit is not reported")
	require.GreaterOrEqual(t, b.Stats().NegativeHits, uint64(2))
}

// A lease marker that cannot be a live lease (planted without a TTL, or
// with far more TTL than a lease gets) is bad bytes: reported, deleted and
// replaced under the reader's own lease, whether the read begins with a
// plain read (a new cache) or with the get-or-lease script (a cache whose
// reads mostly miss). No read waits LeaseWait for a load that is not
// running, and the loaded value reaches L2 at the first miss.
func TestCache_L2_DeadLeaseMarkerReplaced(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const dead = tier.LeasePrefix + "planted"
	plants := []struct {
		name string
		ttl  time.Duration // 0: none
	}{
		{name: "no TTL"},
		{name: "a TTL of a day", ttl: 24 * time.Hour},
	}
	for _, leaseFirst := range []bool{false, true} {
		for _, pl := range plants {
			name := fmt.Sprintf("%s, lease first %v", pl.name, leaseFirst)
			t.Run(name, func(t *testing.T) {
				rec := &recorder{}
				ns := "t-dead-lease-" + strings.NewReplacer(" ", "-", ",", "").Replace(name)
				// LeaseWait longer than the test: a read that waited for the
				// planted marker would show in LeaseWaits and take a minute.
				o := tier.Options[*profile]{Namespace: ns, Observer: rec, LeaseWait: time.Minute}
				a, rdb := instance(t, srv, o)
				ctx := context.Background()
				var loads atomic.Int64
				load := counted(&loads, func(_ context.Context, key string) (*profile, error) { return &profile{Name: key}, nil })
				if leaseFirst {
					for i := range 100 { // cold keys: the cache moves to get-or-lease first
						_, err := a.GetOrLoad(ctx, fmt.Sprint("warmup-", i), load)
						require.NoError(t, err)
					}
				}
				require.NoError(t, rdb.Set(ctx, a.Key("k"), dead, pl.ttl).Err())
				before := a.Stats()
				v, err := a.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
				require.Equal(t, "k", v.Name)
				after := a.Stats()
				require.Equal(t, before.LeaseWaits, after.LeaseWaits, "no wait for a lease that is not live")
				require.Equal(t, before.DecodeErrors+1, after.DecodeErrors, "the marker was reported as bad bytes")
				require.Equal(t, 1, rec.Count(tier.EventDecodeError))
				require.Eventually(t, func() bool { // the leased write is off the caller's path
					b, err := rdb.Get(ctx, a.Key("k")).Bytes()
					var p profile
					_, derr := codec.Decode(codec.Msgpack(), b, tier.WireSchema(a), 0, &p)
					return err == nil && derr == nil && p.Name == "k"
				}, 10*time.Second, 5*time.Millisecond, "L2 holds the loaded value")
				o.Observer = nil
				b, _ := instance(t, srv, o)
				n := loads.Load()
				v, err = b.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
				require.Equal(t, "k", v.Name)
				require.Equal(t, n, loads.Load(), "another instance reads it from L2")
				require.Zero(t, b.Stats().LeaseWaits)
			})
		}
	}
}
