package idempotency_test

import (
	"net/http"
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
