package onetime_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/onetime"
)

type wizard struct {
	Step   int
	Name   string
	Expert int64
}

func TestTempData(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	_, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: rdb})
	require.ErrorIs(t, err, onetime.ErrInvalidOptions, "a Name is required")
	d, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: rdb, Name: "signup", TTL: time.Hour})
	require.NoError(t, err)

	_, err = d.Get(ctx, "session-1")
	require.ErrorIs(t, err, onetime.ErrNotFound)
	require.NoError(t, d.Put(ctx, "session-1", wizard{Step: 1, Name: "Ada"}))
	for range 3 { // read many times
		w, err := d.Get(ctx, "session-1")
		require.NoError(t, err)
		require.Equal(t, wizard{Step: 1, Name: "Ada"}, w)
	}

	// The TTL slides on every read.
	keys, err := rdb.Keys(ctx, "temp:signup:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NotContains(t, keys[0], "session-1", "ids are hashed")
	require.NoError(t, rdb.PExpire(ctx, keys[0], time.Minute).Err())
	_, err = d.Get(ctx, "session-1")
	require.NoError(t, err)
	require.InDelta(t, time.Hour, rdb.PTTL(ctx, keys[0]).Val(), float64(time.Minute))

	w, err := d.Update(ctx, "session-1", func(w wizard, found bool) (wizard, error) {
		require.True(t, found)
		w.Step, w.Expert = 2, 42
		return w, nil
	})
	require.NoError(t, err)
	require.Equal(t, wizard{Step: 2, Name: "Ada", Expert: 42}, w)

	// Another schema reads as absent, and the old bytes are deleted.
	d2, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: rdb, Name: "signup", Schema: 2})
	require.NoError(t, err)
	_, err = d2.Get(ctx, "session-1")
	require.ErrorIs(t, err, onetime.ErrNotFound)
	require.Zero(t, rdb.Exists(ctx, keys[0]).Val())

	require.NoError(t, d.Put(ctx, "session-2", wizard{}))
	require.NoError(t, d.Delete(ctx, "session-2"))
	_, err = d.Get(ctx, "session-2")
	require.ErrorIs(t, err, onetime.ErrNotFound)
}

// TestTempData_UpdateConcurrent: concurrent updates of one value lose
// nothing (compare and set).
func TestTempData_UpdateConcurrent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	d, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: srv.Client(t), Name: "upload", Timeout: 10 * time.Second})
	require.NoError(t, err)
	ctx := t.Context()
	const n = 8 // 2 cores: enough to collide, few enough to finish in 16 rounds
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				_, err := d.Update(ctx, "u-1", func(w wizard, _ bool) (wizard, error) {
					w.Step++
					return w, nil
				})
				if err == nil {
					return
				}
				require.ErrorIs(t, err, onetime.ErrConflict)
			}
		})
	}
	wg.Wait()
	w, err := d.Get(ctx, "u-1")
	require.NoError(t, err)
	require.Equal(t, n, w.Step)
}

func TestTempData_Unavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	d, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: srv.Client(t), Name: "w", Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	srv.Kill()
	_, err = d.Get(t.Context(), "x")
	require.ErrorIs(t, err, onetime.ErrUnavailable)
	require.ErrorIs(t, d.Put(t.Context(), "x", wizard{}), onetime.ErrUnavailable)
}

// TestTempData_UpdateReplyLost: an Update whose compare-and-set ran but
// whose reply was lost (go-redis sends the script again, which then finds
// the new value, not the old one) applies fn once. Before, it read its own
// write as another tab's change and applied fn again: Step went up by two.
func TestTempData_UpdateReplyLost(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	d, err := onetime.NewTempData[wizard](&onetime.TempDataOptions{Client: rdb, Name: "w", Timeout: 10 * time.Second})
	require.NoError(t, err)
	require.NoError(t, d.Put(t.Context(), "id", wizard{Step: 1}))
	calls := 0
	step := func(v wizard, found bool) (wizard, error) {
		calls++
		v.Step++
		return v, nil
	}
	_, err = d.Update(t.Context(), "id", step) // loads the script: the next run is one EVALSHA
	require.NoError(t, err)
	rdb.AddHook(resendOnce("evalsha"))
	calls = 0
	got, err := d.Update(t.Context(), "id", step)
	require.NoError(t, err)
	require.Equal(t, 1, calls, "fn applied once")
	require.Equal(t, 3, got.Step)
	stored, err := d.Get(t.Context(), "id")
	require.NoError(t, err)
	require.Equal(t, 3, stored.Step)
}
