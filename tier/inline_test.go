package tier_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// onCallerStack reports whether fn's caller chain includes a function of
// the test named name (it runs on the test's goroutine).
func onCallerStack(name string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "."+name) {
			return true
		}
		if !more {
			return false
		}
	}
}

// A caller whose context can never end waits for the whole flight anyway:
// the load runs on its goroutine, without a hand-off. A caller whose
// context can end gets a flight of its own goroutine, and can leave.
func TestCache_LoadOnCallerGoroutineOnlyWhenItCannotLeave(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	inline := func(ctx context.Context, key string) bool {
		var on bool
		_, err := c.GetOrLoad(ctx, key, func(context.Context, string) (string, error) {
			on = onCallerStack("TestCache_LoadOnCallerGoroutineOnlyWhenItCannotLeave")
			return "v", nil
		})
		require.NoError(t, err)
		return on
	}
	require.True(t, inline(context.Background(), "background"))
	require.True(t, inline(context.WithoutCancel(t.Context()), "detached"))
	require.False(t, inline(t.Context(), "cancellable"))

	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	defer close(release)
	loading := make(chan struct{})
	go func() {
		<-loading
		cancel()
	}()
	_, err := c.GetOrLoad(ctx, "slow", func(context.Context, string) (string, error) {
		close(loading)
		<-release
		return "v", nil
	})
	require.ErrorIs(t, err, context.Canceled, "the caller left while the load went on")
}

// remoteOnly is an L2 that can lease but not carry writes: its flights
// send their writes themselves, after the answer.
type remoteOnly struct {
	tier.Remote
	tier.Leaser
}

// With an L2 whose writes cannot be queued, the leader does not run the
// flight, which writes L2 after the answer: it would wait for the write.
func TestCache_LoadOffCallerGoroutineWhenItWritesL2Itself(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	be := goredis.Must(srv.Client(t), nil)
	c := newCache(t, &tier.Options[string]{Namespace: "t-" + t.Name(), L2Timeout: 5 * time.Second, L2: remoteOnly{be, be}})
	var on bool
	_, err := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) {
		on = onCallerStack("TestCache_LoadOffCallerGoroutineWhenItWritesL2Itself")
		return "v", nil
	})
	require.NoError(t, err)
	require.False(t, on)
}

// A loader that calls runtime.Goexit on the leader's goroutine (its
// context can never end) ends that goroutine, as x/sync/singleflight's Do
// does; the flight still leaves the table, and the next call loads afresh.
func TestCache_InlineLoaderGoexitEndsLeader(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	returned := false
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_, _ = c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) {
			runtime.Goexit()
			return "", nil
		})
		returned = true
	}()
	<-exited
	require.False(t, returned)
	v, err := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) { return "v", nil })
	require.NoError(t, err)
	require.Equal(t, "v", v)
}

// A Set right after a load of the same key wins in L1: the load's write
// may still be queued in ristretto, which would apply it first and drop
// the Set's (a second Set of a key whose first is queued), leaving the
// older value in L1 after Set returned.
func TestCache_SetRightAfterLoadWinsInL1(t *testing.T) {
	t.Parallel()
	c := newCache(t, &tier.Options[string]{})
	for i := range 200 {
		key := "k" + strconv.Itoa(i)
		_, err := c.GetOrLoad(context.Background(), key, func(context.Context, string) (string, error) { return "old", nil })
		require.NoError(t, err)
		require.NoError(t, c.Set(t.Context(), key, "new", 0))
		v, ok := c.GetIfPresent(key)
		require.True(t, ok, key)
		require.Equal(t, "new", v, key)
	}
}
