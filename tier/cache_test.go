package tier_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tier"
)

func TestCache_GetOrLoad_SingleFlight(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[*profile]{})
	var loads atomic.Int64
	release := make(chan struct{})
	load := counted(&loads, func(ctx context.Context, key string) (*profile, error) {
		<-release
		return &profile{ID: 7, Name: key}, nil
	})
	const callers = 1000
	var started, wg sync.WaitGroup
	started.Add(callers)
	results := make([]*profile, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			results[i], errs[i] = c.GetOrLoad(t.Context(), "user:7", load)
		}()
	}
	started.Wait()
	close(release)
	wg.Wait()
	require.EqualValues(t, 1, loads.Load())
	for i := range callers {
		require.NoError(t, errs[i])
		require.Same(t, results[0], results[i], "every caller gets the same value")
	}
	// Callers that come later share the same value, whether the flight's
	// L1 write is visible yet or not.
	v, err := c.GetOrLoad(t.Context(), "user:7", load)
	require.NoError(t, err)
	require.Same(t, results[0], v)
	require.EqualValues(t, 1, loads.Load())
}

func TestCache_GetOrLoad_L1HitDoesNotAllocate(t *testing.T) {
	c := newCache(t, &tier.Options[*profile]{})
	ctx := context.Background()
	_, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (*profile, error) { return &profile{ID: 1}, nil })
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = c.GetOrLoad(ctx, "k", nil)
	})
	require.Zero(t, allocs)
}

func TestCache_GetOrLoad_LoaderPanics(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	release := make(chan struct{})
	var loads atomic.Int64
	load := counted(&loads, func(ctx context.Context, key string) (string, error) {
		<-release
		panic("boom")
	})
	const callers = 10
	var wg sync.WaitGroup
	panics := make([]any, callers)
	var joined sync.WaitGroup
	joined.Add(callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			joined.Done()
			_, _ = c.GetOrLoad(t.Context(), "k", load)
		}()
	}
	joined.Wait()
	close(release)
	wg.Wait()
	for i := range callers {
		var pe *tier.PanicError
		require.ErrorAs(t, panics[i].(error), &pe)
		require.Equal(t, "boom", pe.Value)
		require.Contains(t, string(pe.Stack), "cache_test.go", "the stack is the loader's")
	}
	// Nothing was cached: the next call loads afresh.
	v, err := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) { return "ok", nil })
	require.NoError(t, err)
	require.Equal(t, "ok", v)
}

func TestCache_GetOrLoad_LoaderGoexit(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	done := make(chan error, 2)
	release := make(chan struct{})
	for range 2 {
		go func() {
			_, err := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) {
				<-release
				runtime.Goexit()
				return "", nil
			})
			done <- err
		}()
	}
	close(release)
	for range 2 {
		require.ErrorIs(t, <-done, tier.ErrLoaderGoexit)
	}
	v, err := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) { return "ok", nil })
	require.NoError(t, err)
	require.Equal(t, "ok", v)
}

func TestCache_GetOrLoad_FirstCallerCancelled(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	inLoad := make(chan struct{})
	release := make(chan struct{})
	var loads atomic.Int64
	load := counted(&loads, func(ctx context.Context, key string) (string, error) {
		close(inLoad)
		select {
		case <-release:
			return "v", ctx.Err() // ctx must still be alive
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	ctx1, cancel1 := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx1, "k", load)
		first <- err
	}()
	<-inLoad
	second := make(chan string, 1)
	go func() {
		v, err := c.GetOrLoad(t.Context(), "k", load)
		if err != nil {
			v = err.Error()
		}
		second <- v
	}()
	cancel1()
	require.ErrorIs(t, <-first, context.Canceled, "the first caller stops waiting")
	close(release)
	require.Equal(t, "v", <-second, "the others still get the value")
	require.EqualValues(t, 1, loads.Load())
}

func TestCache_GetOrLoad_NegativeCaching(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newCache(t, &tier.Options[string]{
		Clock:       clock,
		NegativeTTL: time.Second,
		TTL:         time.Hour,
		Jitter:      tier.NoJitter,
		IsNotFound:  func(err error) bool { return errors.Is(err, sql.ErrNoRows) },
	})
	var loads atomic.Int64
	load := counted(&loads, func(context.Context, string) (string, error) { return "", sql.ErrNoRows })

	_, err := c.GetOrLoad(t.Context(), "missing", load)
	require.ErrorIs(t, err, tier.ErrNotFound)
	require.ErrorIs(t, err, sql.ErrNoRows, "the loader's own error is kept")
	_, err = c.GetOrLoad(t.Context(), "missing", load)
	require.ErrorIs(t, err, tier.ErrNotFound)
	require.EqualValues(t, 1, loads.Load(), "the second call is a negative hit")

	clock.Advance(2 * time.Second)
	_, err = c.GetOrLoad(t.Context(), "missing", load)
	require.ErrorIs(t, err, tier.ErrNotFound)
	require.EqualValues(t, 2, loads.Load(), "the negative entry expired")
}

func TestCache_GetOrLoad_TTL(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newCache(t, &tier.Options[int]{Clock: clock, TTL: time.Minute, Jitter: tier.NoJitter})
	var loads atomic.Int64
	load := counted(&loads, func(context.Context, string) (int, error) { return int(loads.Load()), nil })
	v, err := c.GetOrLoad(t.Context(), "k", load)
	require.NoError(t, err)
	require.Equal(t, 1, v)
	clock.Advance(59 * time.Second)
	v, _ = c.GetOrLoad(t.Context(), "k", load)
	require.Equal(t, 1, v)
	clock.Advance(2 * time.Second)
	v, _ = c.GetOrLoad(t.Context(), "k", load)
	require.Equal(t, 2, v)
}

func TestCache_GetOrLoad_LoaderError(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[int]{})
	boom := errors.New("db down")
	_, err := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (int, error) { return 0, boom })
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, tier.ErrNotFound)
	require.Contains(t, err.Error(), "tier: load")
	v, err := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (int, error) { return 3, nil })
	require.NoError(t, err, "errors are not cached")
	require.Equal(t, 3, v)
	require.EqualValues(t, 1, c.Stats().LoadErrors)
}

func TestCache_GetOrLoad_LoadTimeout(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[int]{LoadTimeout: 20 * time.Millisecond})
	_, err := c.GetOrLoad(t.Context(), "k", func(ctx context.Context, _ string) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestCache_Keys(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c := newCache(t, &tier.Options[string]{MaxKeyBytes: 64, Observer: rec})
	echo := func(_ context.Context, key string) (string, error) { return key, nil }
	tests := []struct {
		name    string
		key     string
		wantErr error
	}{
		{name: "empty", key: "", wantErr: tier.ErrInvalidKey},
		{name: "over-long", key: strings.Repeat("k", 65), wantErr: tier.ErrInvalidKey},
		{name: "at the limit", key: strings.Repeat("k", 64)},
		{name: "CR LF", key: "a\r\nb"},
		{name: "glob", key: "user:*?[a]"},
		{name: "hash tag", key: "{user}:1"},
		{name: "invalid UTF-8", key: "\xff\xfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.GetOrLoad(t.Context(), tt.key, echo)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.key, v, "binary-safe keys come back as they went in")
		})
	}
	for _, e := range rec.Events() {
		require.NotContains(t, e.Key, "user", "the observer sees hashed keys by default")
	}
}

func TestCache_Set_ValueTooLarge(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c := newCache(t, &tier.Options[string]{MaxValueBytes: 100, Observer: rec})
	require.NoError(t, c.Set(t.Context(), "k", "small", 0))
	err := c.Set(t.Context(), "k", strings.Repeat("x", 200), 0)
	var tooLarge *tier.ValueTooLargeError
	require.ErrorAs(t, err, &tooLarge)
	require.ErrorIs(t, err, tier.ErrValueTooLarge)
	require.Equal(t, 100, tooLarge.Limit)
	_, ok := c.GetIfPresent("k")
	require.False(t, ok, "the old value is not served after a refused Set")

	// A loaded value over the limit is returned, not cached, and reported.
	var loads atomic.Int64
	big := counted(&loads, func(context.Context, string) (string, error) { return strings.Repeat("y", 500), nil })
	for range 2 {
		v, err := c.GetOrLoad(t.Context(), "big", big)
		require.NoError(t, err)
		require.Len(t, v, 500)
	}
	require.EqualValues(t, 2, loads.Load())
	require.EqualValues(t, 3, c.Stats().Refused)
	require.Equal(t, 3, rec.Count(tier.EventValueRefused))
}

func TestCache_Delete_FencesRunningLoad(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	inLoad := make(chan struct{})
	release := make(chan struct{})
	version := atomic.Value{}
	version.Store("v1")
	got := make(chan string, 1)
	go func() {
		v, _ := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) {
			read := version.Load().(string) // reads v1 ...
			close(inLoad)
			<-release // ... and is slow to return it
			return read, nil
		})
		got <- v
	}()
	<-inLoad
	version.Store("v2")
	require.NoError(t, c.Delete(t.Context(), "k"))
	close(release)
	require.Equal(t, "v1", <-got, "a caller that started before the delete may see v1")
	v, err := c.GetOrLoad(t.Context(), "k", func(context.Context, string) (string, error) { return version.Load().(string), nil })
	require.NoError(t, err)
	require.Equal(t, "v2", v, "the stale load installed nothing")
}

func TestCache_DropLocal(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[int]{})
	n := 0
	load := func(context.Context, string) (int, error) { n++; return n, nil }
	v, _ := c.GetOrLoad(t.Context(), "k", load)
	require.Equal(t, 1, v)
	c.DropLocal(t.Context())
	v, _ = c.GetOrLoad(t.Context(), "k", load)
	require.Equal(t, 2, v)
}

func TestCache_GetOrLoadMany(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	_, err := c.GetOrLoad(t.Context(), "a", func(context.Context, string) (string, error) { return "A", nil })
	require.NoError(t, err)
	var asked [][]string
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		asked = append(asked, append([]string(nil), keys...))
		out := map[string]string{}
		for _, k := range keys {
			if k != "missing" {
				out[k] = strings.ToUpper(k)
			}
		}
		return out, nil
	}
	got, err := c.GetOrLoadMany(t.Context(), []string{"a", "b", "c", "b", "missing"}, load)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "A", "b": "B", "c": "C"}, got)
	require.Equal(t, [][]string{{"b", "c", "missing"}}, asked, "the loader gets only the keys that missed")
	got, err = c.GetOrLoadMany(t.Context(), []string{"a", "b", "c", "missing"}, load)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Len(t, asked, 1, "everything, including the negative entry, came from L1")
}

func TestCache_Stats_AddUp(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[int]{})
	load := func(context.Context, string) (int, error) { return 1, nil }
	for i := range 100 {
		_, err := c.GetOrLoad(t.Context(), fmt.Sprint(i%10), load)
		require.NoError(t, err)
	}
	s := c.Stats()
	require.EqualValues(t, 100, s.L1Hits+s.Misses)
	// A call that arrives while a finished load's value is still on its way
	// into L1 misses L1 but shares that load: misses >= loads.
	require.GreaterOrEqual(t, s.Misses, uint64(10))
	require.EqualValues(t, 10, s.Loads)
}

func TestCache_Close(t *testing.T) {
	t.Parallel()
	c, err := tier.New(&tier.Options[int]{})
	require.NoError(t, err)
	inLoad := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (int, error) {
			close(inLoad)
			<-ctx.Done() // Close cancels running loads
			return 0, ctx.Err()
		})
		res <- err
	}()
	<-inLoad
	require.NoError(t, c.Close())
	require.Error(t, <-res)
	require.NoError(t, c.Close(), "Close is idempotent")
	_, err = c.GetOrLoad(context.Background(), "k", func(context.Context, string) (int, error) { return 1, nil })
	require.ErrorIs(t, err, tier.ErrClosed)
	require.ErrorIs(t, c.Set(context.Background(), "k", 1, 0), tier.ErrClosed)
}

func TestNew_InvalidOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    *tier.Options[int]
	}{
		{name: "negative TTL", o: &tier.Options[int]{TTL: -time.Second}},
		{name: "jitter 1", o: &tier.Options[int]{Jitter: 1}},
		{name: "negative jitter other than NoJitter", o: &tier.Options[int]{Jitter: -0.5}},
		{name: "brace in namespace", o: &tier.Options[int]{Namespace: "a{b}"}},
		{name: "newline in namespace", o: &tier.Options[int]{Namespace: "a\nb"}},
		{name: "negative MaxValueBytes", o: &tier.Options[int]{MaxValueBytes: -1}},
		{name: "SoftTimeout without FailSafe", o: &tier.Options[int]{SoftTimeout: time.Second}},
		{name: "SoftTimeout above LoadTimeout", o: &tier.Options[int]{FailSafe: time.Hour, SoftTimeout: time.Minute, LoadTimeout: time.Second}},
		{name: "SoftTimeout equal to the default LoadTimeout", o: &tier.Options[int]{FailSafe: time.Hour, SoftTimeout: 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tier.New(tt.o)
			require.ErrorIs(t, err, tier.ErrInvalidOptions)
			require.Panics(t, func() { tier.Must(tt.o) })
		})
	}
}

// A read right after Delete returns never sees the deleted value, even
// when the value's L1 write was still queued in ristretto (Sets are applied
// asynchronously and the load that made it does not wait for that).
func TestCache_Delete_NoOldValueAfterReturn(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{TTL: time.Hour})
	ctx := t.Context()
	for i := range 500 {
		key := fmt.Sprint("k", i%7)
		old := fmt.Sprint("old", i)
		v, err := c.GetOrLoad(ctx, key, func(context.Context, string) (string, error) { return old, nil })
		require.NoError(t, err)
		require.Equal(t, old, v)
		require.NoError(t, c.Delete(ctx, key))
		got, ok := c.GetIfPresent(key)
		require.False(t, ok, "round %d: L1 served %q after Delete returned", i, got)
		v, err = c.GetOrLoad(ctx, key, func(context.Context, string) (string, error) { return "new", nil })
		require.NoError(t, err)
		require.Equal(t, "new", v, "round %d", i)
		require.NoError(t, c.Delete(ctx, key))
	}
	require.Zero(t, c.Stats().InvalidationsReceived, "this cache's own Deletes are not invalidations received")
}

// Close while other goroutines write (Set waits for L1; Delete does when
// the key's load just completed and its L1 write may be queued) returns,
// and so do the writes: a wait queued as ristretto stops is never answered,
// so the cache stops waiting for L1 once Close begins to close it. (Before
// that guard, Set loops hung Close within 30 rounds here.)
func TestCache_Close_DuringWrites(t *testing.T) {
	t.Parallel()
	for round := range 100 {
		c, err := tier.New(&tier.Options[string]{TTL: time.Hour})
		require.NoError(t, err)
		ctx := context.Background()
		var wg sync.WaitGroup
		var ops atomic.Int64 // rounds of writes begun, by all writers
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					ops.Add(1)
					key := fmt.Sprint("k", w, "-", i%5)
					if w%2 == 0 { // Set alone: it always waits for L1
						if err := c.Set(ctx, key, "v", 0); err != nil {
							return // closed
						}
						continue
					}
					if _, err := c.GetOrLoad(ctx, key, func(context.Context, string) (string, error) { return "v", nil }); err != nil {
						return
					}
					if err := c.Delete(ctx, key); err != nil {
						return
					}
				}
			})
		}
		// Close lands at a different point of the writes in each round.
		require.Eventually(t, func() bool { return ops.Load() >= int64(round%4*20) }, 5*time.Second, 50*time.Microsecond)
		done := make(chan struct{})
		go func() {
			_ = c.Close()
			wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Close or a write hung", round)
		}
	}
}
