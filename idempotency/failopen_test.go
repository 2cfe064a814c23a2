package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/internal/redistest"
)

// The tests of this file: no request this instance finished runs again,
// whatever Begin meets on its way (from a helper's second review; each
// fails on the code before it).

// countingHandler returns a handler answering 201 and its run count.
func countingHandler() (http.Handler, *atomic.Int32) {
	var runs atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.WriteHeader(http.StatusCreated)
	}), &runs
}

// TestOutage_BreakerOpenPendingNeverFailsOpen: Redis is down, the request
// is done and its result queued; other requests open the breaker. A retry
// of the request is refused (503) on a FailOpen route: Begin checked the
// breaker before the queue and returned plain ErrUnavailable, and the
// middleware ran the request again.
func TestOutage_BreakerOpenPendingNeverFailsOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true, Timeout: time.Second})
	handler, runs := countingHandler()
	h := newMiddleware(t, s, &idempotency.RouteOptions{FailOpen: true}).Wrap(handler)
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	srv.Kill()
	require.ErrorIs(t, b.Attempt.Complete(t.Context(), idempotency.Result{Status: http.StatusCreated}), idempotency.ErrDeferred)
	for i := range idempotency.DefaultBreakerFailures {
		do(t, h, "POST", "/b", fmt.Sprint("other", i), nil) // they fail open, as asked
	}
	before := runs.Load()
	_, err = s.Begin(t.Context(), "", "k", nil)
	require.ErrorIs(t, err, idempotency.ErrCompletionPending)
	require.ErrorContains(t, err, "breaker open")
	require.Equal(t, http.StatusServiceUnavailable, do(t, h, "POST", "/b", "k", nil).status)
	require.Equal(t, before, runs.Load(), "the finished request did not run again")
}

// isScript reports whether cmd runs the script whose SHA1 is hash.
func isScript(cmd redis.Cmder, hash string) bool {
	a := cmd.Args()
	if len(a) < 2 {
		return false
	}
	s, _ := a[1].(string)
	return s == hash
}

// TestOutage_RecordedThenBeginFails: Redis flaps. The retry's Begin
// records this instance's queued completion, and its begin script, right
// after, fails. Begin now answers with the result it just recorded; it
// returned plain ErrUnavailable, and a FailOpen route ran the request.
func TestOutage_RecordedThenBeginFails(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var failComplete, failBegin atomic.Bool
	failComplete.Store(true)
	rdb.AddHook(redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if failComplete.Load() && isScript(cmd, idempotency.CompleteScriptHash()) ||
			failBegin.Load() && isScript(cmd, idempotency.BeginScriptHash()) {
			cmd.SetErr(errors.New("i/o timeout (injected)"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}))
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true, NoBreaker: true})
	handler, runs := countingHandler()
	h := newMiddleware(t, s, &idempotency.RouteOptions{FailOpen: true}).Wrap(handler)
	require.Equal(t, http.StatusCreated, do(t, h, "POST", "/b", "k", nil).status)
	require.Equal(t, 1, s.Pending(), "its result is queued")
	failBegin.Store(true)
	failComplete.Store(false)
	r := do(t, h, "POST", "/b", "k", nil)
	require.Equal(t, http.StatusCreated, r.status, "the recorded result, replayed")
	require.EqualValues(t, 1, runs.Load(), "the request did not run again")
	info, err := s.Inspect(t.Context(), "", "k")
	require.NoError(t, err)
	require.Equal(t, idempotency.StateCompleted, info.State)
}

// unusedBreaker is a breaker that is always closed and counts what it
// hears.
type unusedBreaker struct{ successes, failures, unused atomic.Int32 }

func (b *unusedBreaker) Allow() bool { return true }
func (b *unusedBreaker) Success()    { b.successes.Add(1) }
func (b *unusedBreaker) Failure()    { b.failures.Add(1) }
func (b *unusedBreaker) Unused()     { b.unused.Add(1) }

// TestBegin_CallerGoneFreesProbe: a Begin whose caller has left says so to
// the breaker (Unused: if it was the half-open breaker's probe, the next
// call probes at once), not nothing, which kept a half-open breaker
// refusing every Begin for another cool-down.
func TestBegin_CallerGoneFreesProbe(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	br := &unusedBreaker{}
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true, Breaker: br})
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Begin(gone, "", "k", nil)
	require.ErrorIs(t, err, context.Canceled)
	require.EqualValues(t, 1, br.unused.Load())
	require.Zero(t, br.failures.Load())
}

// TestAttempt_CompleteEndedContextQueues: Complete whose context has ended
// queues the result (ErrDeferred) as for an unreachable Redis. It returned
// the context's error alone: nothing queued, nothing reported, and after
// the lease a retry on this instance took the finished request over.
func TestAttempt_CompleteEndedContextQueues(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true})
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	err = b.Attempt.Complete(gone, idempotency.Result{Status: http.StatusCreated})
	require.ErrorIs(t, err, idempotency.ErrDeferred)
	require.ErrorIs(t, err, context.Canceled)
	idempotency.SetClockOffset(s, time.Hour) // the lease is long over
	got, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeCompleted, got.Outcome, "the queued result was recorded first")
}

// TestMiddleware_ClosedStoreNeverFailsOpen: once the Store is closed (its
// queued results dropped), a FailOpen route answers 503 instead of running
// requests unprotected: one whose result was dropped would run again.
func TestMiddleware_ClosedStoreNeverFailsOpen(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, nil)
	handler, runs := countingHandler()
	h := newMiddleware(t, s, &idempotency.RouteOptions{FailOpen: true}).Wrap(handler)
	require.NoError(t, s.Close())
	require.Equal(t, http.StatusServiceUnavailable, do(t, h, "POST", "/b", "k", nil).status)
	require.Zero(t, runs.Load())
}

// TestOutage_RecordedReplayReportsSuccess: a Begin that records this
// instance's queued result and answers with it tells the breaker that
// Redis answered. It said nothing: when that Begin was a half-open
// breaker's probe (the likely first call after an outage: a client
// retrying its own request), the breaker refused every call for another
// cool-down.
func TestOutage_RecordedReplayReportsSuccess(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var failComplete atomic.Bool
	failComplete.Store(true)
	rdb.AddHook(redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if failComplete.Load() && isScript(cmd, idempotency.CompleteScriptHash()) {
			cmd.SetErr(errors.New("i/o timeout (injected)"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}))
	br := &unusedBreaker{}
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true, Breaker: br})
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	require.ErrorIs(t, b.Attempt.Complete(t.Context(), idempotency.Result{Status: http.StatusCreated}), idempotency.ErrDeferred)
	failComplete.Store(false)
	before := br.successes.Load()
	got, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeCompleted, got.Outcome)
	require.Greater(t, br.successes.Load(), before, "the breaker heard that Redis answered")
}
