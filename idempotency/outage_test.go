package idempotency_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
)

// TestOutage_RestartWhileRunning: Redis is killed while the handler runs
// and comes back empty before it ends. Requests during the outage fail
// closed (503); the running attempt's next heartbeat writes its record
// again, so a retry after the restart finds the request in flight (409)
// rather than running it a second time; then it is replayed.
func TestOutage_RestartWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	o := &idempotency.Options{Lease: 2 * time.Second, Heartbeat: 20 * time.Millisecond}
	s1, ev1 := newStore(t, rdb, o)
	s2, _ := newStore(t, rdb, o)
	watch := ev1.watch()
	var runs atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	unblock := releaser(t, release)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		close(started)
		<-release
		_, _ = w.Write([]byte("booked"))
	})
	h1 := newMiddleware(t, s1, nil).Wrap(handler)
	h2 := newMiddleware(t, s2, nil).Wrap(handler)

	first := make(chan response, 1)
	go func() { first <- do(t, h1, "POST", "/b", "k", nil) }()
	<-started
	srv.Kill()
	r := do(t, h2, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "fail closed")
	require.NotEmpty(t, r.header.Get("Retry-After"))

	srv.Restart() // empty
	waitFor(t, watch, idempotency.EventRecreated)
	r = do(t, h2, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusConflict, r.status, "the request is known to be in flight again")

	unblock()
	f := <-first
	require.Equal(t, http.StatusOK, f.status)
	r = do(t, h2, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, f.body, r.body)
	require.Equal(t, int32(1), runs.Load(), "no double execution")
}

// TestOutage_CompleteAfterRecovery: Redis is killed while the handler runs
// and is still down when it ends. The client gets the handler's answer (the
// work is done); the completion is queued and written by the background
// completer once Redis is back (empty), so that the retry gets the replay.
func TestOutage_CompleteAfterRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	// Pending drops before EventCompleted is reported: read it inside the
	// observer, on the completer's goroutine, when the event is emitted.
	var s1 *idempotency.Store
	pendingAtCompleted := make(chan int, 1)
	s1, ev1 := newStore(t, rdb, &idempotency.Options{Lease: 2 * time.Second, OnEvent: func(e idempotency.Event) {
		if e.Kind == idempotency.EventCompleted {
			pendingAtCompleted <- s1.Pending()
		}
	}})
	s2, _ := newStore(t, rdb, &idempotency.Options{Lease: 2 * time.Second, NoL1: true})
	watch := ev1.watch()
	var runs atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	unblock := releaser(t, release)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		close(started)
		<-release
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("booked"))
	})
	h1 := newMiddleware(t, s1, nil).Wrap(handler)
	h2 := newMiddleware(t, s2, nil).Wrap(handler)

	first := make(chan response, 1)
	go func() { first <- do(t, h1, "POST", "/b", "k", nil) }()
	<-started
	srv.Kill()
	unblock()
	f := <-first
	require.Equal(t, http.StatusCreated, f.status, "the client gets the answer of the work that was done")
	waitFor(t, watch, idempotency.EventCompleteDeferred)
	require.Equal(t, 1, s1.Pending())

	r := do(t, h2, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "fail closed")

	srv.Restart()
	waitFor(t, watch, idempotency.EventCompleted)
	require.Equal(t, 1, ev1.count(idempotency.EventRecreated))
	require.Zero(t, <-pendingAtCompleted, "Pending when EventCompleted was reported")
	require.Zero(t, s1.Pending())
	r = do(t, h2, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusCreated, r.status)
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, f.body, r.body)
	require.Equal(t, int32(1), runs.Load(), "no double execution after recovery")
}

// TestOutage_CloseDropsPending: Close does not wait for Redis; what was
// queued is reported dropped.
func TestOutage_CloseDropsPending(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	s, ev := newStore(t, rdb, nil)
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	srv.Kill()
	err = b.Attempt.Complete(t.Context(), idempotency.Result{Status: 200})
	require.ErrorIs(t, err, idempotency.ErrDeferred)
	require.ErrorIs(t, err, idempotency.ErrUnavailable)
	require.Equal(t, 1, s.Pending())
	require.NoError(t, s.Close())
	require.Zero(t, s.Pending())
	require.Equal(t, 1, ev.count(idempotency.EventCompleteDropped))
}

// TestOutage_PausedAtCompletion: Redis stops answering (SIGSTOP) while the
// handler runs, so its completion is queued; Redis comes back with the
// record still in flight and its lease over. A retry on the same instance
// records the queued completion before anything else, and gets the replay
// instead of taking the request over and running it again.
func TestOutage_PausedAtCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	s, ev := newStore(t, rdb, &idempotency.Options{Timeout: time.Second, NoBreaker: true})
	watch := ev.watch()
	var runs atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	unblock := releaser(t, release)
	h := newMiddleware(t, s, nil).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			close(started)
			<-release
		}
		_, _ = w.Write([]byte("booked"))
	}))
	first := make(chan response, 1)
	go func() { first <- do(t, h, "POST", "/b", "k", nil) }()
	<-started
	srv.Pause()
	unblock()
	f := <-first
	require.Equal(t, http.StatusOK, f.status)
	waitFor(t, watch, idempotency.EventCompleteDeferred)
	srv.Resume()
	idempotency.SetClockOffset(s, time.Hour) // the lease is long over
	r := do(t, h, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, f.body, r.body)
	require.Equal(t, int32(1), runs.Load(), "not taken over")
}

// TestOutage_CancelledRetryKeepsQueuedCompletion: a retry whose client
// went away takes the queued completion of its record, and its try fails
// on the retry's cancelled context: the completion goes back to the queue
// (a context error is not an outcome), and is recorded once Redis is back,
// so the next retry gets the replay. Before, it was released unwritten and
// nothing was reported: the next retry ran the work again.
func TestOutage_CancelledRetryKeepsQueuedCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	s, ev := newStore(t, rdb, &idempotency.Options{NoL1: true})
	watch := ev.watch()
	ctx := t.Context()
	b, err := s.Begin(ctx, "", "k", nil)
	require.NoError(t, err)
	srv.Kill()
	require.ErrorIs(t, b.Attempt.Complete(ctx, idempotency.Result{Status: http.StatusCreated, Body: []byte("booked")}), idempotency.ErrDeferred)
	require.Equal(t, 1, s.Pending())

	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Begin(gone, "", "k", nil)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, s.Pending(), "the completion is still queued")
	// Nor does a context whose cause reads as an outcome (an outer
	// attempt's Keep context ends with ErrLeaseLost).
	kept, stop := context.WithCancelCause(ctx)
	stop(idempotency.ErrLeaseLost)
	_, err = s.Begin(kept, "", "k", nil)
	require.Error(t, err)
	require.Equal(t, 1, s.Pending(), "the completion is still queued")
	require.Zero(t, ev.count(idempotency.EventCompleteDropped))

	srv.Restart()
	waitFor(t, watch, idempotency.EventCompleted)
	got, err := s.Begin(ctx, "", "k", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeCompleted, got.Outcome, "the retry gets the replay, not the work again")
	require.Equal(t, []byte("booked"), got.Result.Body)
}

// TestOutage_BeginDuringCompleterRound: two completions wait for Redis;
// when it is back, the completer records one of them, and a retry of the
// other's record arrives right then (here, from the observer of the first
// EventCompleted, on the completer's goroutine). The retry finds the other
// completion still queued and records it before it begins: it gets the
// replay. Before, the completer took its whole queue at once, so the other
// was in neither the queue nor the completer's busy set: the retry took
// the record over and ran the work again (in about half the runs: when
// both were in the round's batch).
func TestOutage_BeginDuringCompleterRound(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	ctx := t.Context()
	var s *idempotency.Store
	type begun struct {
		key string
		b   idempotency.Begun
		err error
	}
	other := make(chan begun, 1)
	var mu sync.Mutex
	keyOf := map[string]string{} // record (short) -> key, from the deferred events
	var fired atomic.Bool        // not a sync.Once: the Begin below reports EventCompleted too, from inside
	s, _ = newStore(t, rdb, &idempotency.Options{NoL1: true, OnEvent: func(e idempotency.Event) {
		switch {
		case e.Kind == idempotency.EventCompleteDeferred:
			mu.Lock()
			keyOf[e.Record] = map[bool]string{true: "one", false: "two"}[len(keyOf) == 0]
			mu.Unlock()
		case e.Kind == idempotency.EventCompleted && fired.CompareAndSwap(false, true):
			mu.Lock()
			k := map[string]string{"one": "two", "two": "one"}[keyOf[e.Record]]
			mu.Unlock()
			b, err := s.Begin(ctx, "", k, nil)
			other <- begun{k, b, err}
		}
	}})
	one, err := s.Begin(ctx, "", "one", nil)
	require.NoError(t, err)
	two, err := s.Begin(ctx, "", "two", nil)
	require.NoError(t, err)
	srv.Kill()
	require.ErrorIs(t, one.Attempt.Complete(ctx, idempotency.Result{Status: http.StatusCreated, Body: []byte("one")}), idempotency.ErrDeferred)
	require.ErrorIs(t, two.Attempt.Complete(ctx, idempotency.Result{Status: http.StatusCreated, Body: []byte("two")}), idempotency.ErrDeferred)
	require.Equal(t, 2, s.Pending())

	srv.Restart()
	var got begun
	select {
	case got = <-other:
	case <-time.After(time.Minute): // a bound against a hang
		t.Fatal("no completion recorded within a minute")
	}
	require.NoError(t, got.err)
	require.Equal(t, idempotency.OutcomeCompleted, got.b.Outcome, "the retry of %s gets the replay, not the work again", got.key)
	require.Equal(t, []byte(got.key), got.b.Result.Body)
}

// TestOutage_PendingCompletionNeverFailsOpen: a retry that finds this
// instance's queued completion of its key and cannot record it (Redis
// down) is refused, even on a FailOpen route: the request is done, and
// running it again would book twice.
func TestOutage_PendingCompletionNeverFailsOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true})
	var runs atomic.Int32
	h := newMiddleware(t, s, &idempotency.RouteOptions{FailOpen: true}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	srv.Kill()
	require.ErrorIs(t, b.Attempt.Complete(t.Context(), idempotency.Result{Status: http.StatusCreated}), idempotency.ErrDeferred)
	_, err = s.Begin(t.Context(), "", "k", nil)
	require.ErrorIs(t, err, idempotency.ErrCompletionPending)
	require.ErrorIs(t, err, idempotency.ErrUnavailable)
	r := do(t, h, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "not run again: its result waits to be recorded")
	require.Zero(t, runs.Load())
	r = do(t, h, "POST", "/b", "other", nil)
	require.Equal(t, http.StatusCreated, r.status, "another key fails open")
	require.EqualValues(t, 1, runs.Load())
}
