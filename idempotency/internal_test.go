package idempotency

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestBeginScript_Resent: go-redis resends a command whose reply was lost;
// the owner token makes the begin script give the same attempt back
// instead of answering "in flight" to its own request. The same holds for
// a takeover.
func TestBeginScript_Resent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, err := New(t.Context(), &Options{Client: srv.Client(t), NoL1: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	id := s.recordID("", "resent")
	fp := fingerprintHex(nil)
	first, err := s.run(ctx, beginScript, id.key, fp, "owner-1", 10000, 60000, 0)
	require.NoError(t, err)
	again, err := s.run(ctx, beginScript, id.key, fp, "owner-1", 10000, 60000, 0)
	require.NoError(t, err)
	r1, _ := parseBegin(first)
	r2, _ := parseBegin(again)
	require.Equal(t, "acquired", r2.outcome)
	require.Equal(t, r1.fence, r2.fence)

	other, err := s.run(ctx, beginScript, id.key, fp, "owner-2", 10000, 60000, 0)
	require.NoError(t, err)
	r3, _ := parseBegin(other)
	require.Equal(t, "inflight", r3.outcome)

	tk, err := s.run(ctx, beginScript, id.key, fp, "owner-2", 10000, 60000, 20000)
	require.NoError(t, err)
	tk2, err := s.run(ctx, beginScript, id.key, fp, "owner-2", 10000, 60000, 20000)
	require.NoError(t, err)
	r4, _ := parseBegin(tk)
	r5, _ := parseBegin(tk2)
	require.Equal(t, "takeover", r4.outcome)
	require.Equal(t, "takeover", r5.outcome)
	require.Equal(t, r4.fence, r5.fence)
	require.Greater(t, r4.fence, r1.fence)
}

func FuzzKeyFromHeader(f *testing.F) {
	for _, s := range []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "bare", `""`, `"a\"b"`, `"a\\b"`, `"\x01"`, `"unterminated`, "é", strings.Repeat("k", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header.Set(HeaderKey, v)
		key, ok, err := KeyFromHeader(r)
		if !ok {
			t.Fatalf("a present field reported absent")
		}
		if err == nil {
			if checkKey(key) != nil {
				t.Fatalf("accepted an invalid key %q", key)
			}
		}
	})
}

// TestCompleter_SettleBackWakes: a completion a Begin took and could not
// record goes back to the queue and wakes the completer. Its loop may have
// run while the Begin held it, found the queue empty and stopped its
// timer: without the wake, nothing but a new completion or a call of this
// instance that reaches Redis would try it again, and another instance
// could take the record over once its lease ended. While a Begin holds it,
// its record is busy: a second Begin waits instead of beginning. The test
// plays the loop (its goroutine is not started).
func TestCompleter_SettleBackWakes(t *testing.T) {
	t.Parallel()
	c, b := loopless(t)
	ctx := t.Context()
	key := b.Attempt.id.key
	pc := &pendingCompletion{a: b.Attempt}
	require.True(t, c.add(ctx, pc))
	<-c.wake // the loop's round: it will find the queue empty
	require.Same(t, pc, first(c.take(ctx, key)))
	require.Contains(t, c.busy, key, "a second Begin of the record waits")
	gone, cancel := context.WithCancel(ctx)
	cancel()
	got, waited := c.take(gone, key)
	require.Nil(t, got, "a second Begin waits until its context ends")
	require.True(t, waited)
	require.False(t, c.settle(ctx, pc), "not recorded")
	select {
	case <-c.wake:
	default:
		t.Fatal("the completion went back to the queue without waking the completer")
	}
	require.Equal(t, []*pendingCompletion{pc}, c.pending)
	require.Equal(t, 1, c.count)
	require.NotContains(t, c.busy, key)

	// Only a completion that completeOnce released is final.
	require.Same(t, pc, first(c.take(ctx, key)))
	c.releaseLocked(pc) // as completeOnce does on a final outcome (under c.mu; no other goroutine here)
	require.True(t, c.settle(ctx, pc))
	require.Zero(t, c.count)
	require.Empty(t, c.pending)
}

// TestCompleter_TakesNewestAttempt: of two queued completions of one
// record (an older attempt's, whose lease a newer one took over), take
// hands out the newer one: recording the older one can only find its lease
// lost, after which the retry would begin while the newer one waits.
func TestCompleter_TakesNewestAttempt(t *testing.T) {
	t.Parallel()
	c, b := loopless(t)
	ctx := t.Context()
	older := &pendingCompletion{a: &Attempt{s: c.s, id: b.Attempt.id, Fence: b.Attempt.Fence}}
	newer := &pendingCompletion{a: &Attempt{s: c.s, id: b.Attempt.id, Fence: b.Attempt.Fence + 1}}
	require.True(t, c.add(ctx, older))
	require.True(t, c.add(ctx, newer))
	require.Same(t, newer, first(c.take(ctx, b.Attempt.id.key)))
}

// TestCompleter_ObserverPanicLeavesNoBusyRecord: an observer that panics
// while a Begin reports the outcome of the completion it took (here, on
// EventCompleted) goes up to the Begin's caller, and the record is not left
// busy: a later Begin of the key does not wait for a try that is over.
func TestCompleter_ObserverPanicLeavesNoBusyRecord(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var boom atomic.Bool
	s, err := New(t.Context(), &Options{Client: srv.Client(t), NoL1: true, OnEvent: func(e Event) {
		if e.Kind == EventCompleted && boom.Load() {
			panic("observer bug")
		}
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	b, err := s.Begin(ctx, "", "k", nil)
	require.NoError(t, err)
	enc, err := s.encodeResult(Result{Status: 201})
	require.NoError(t, err)
	// Queued without waking the completer (whose loop would record it, and
	// panic on its own goroutine): only the Begin below tries it.
	pc := &pendingCompletion{a: b.Attempt, enc: enc, res: &Result{Status: 201}, deadline: time.Now().Add(time.Hour), queued: true}
	s.c.mu.Lock()
	s.c.pending = append(s.c.pending, pc)
	s.c.count++
	s.c.waiting.Store(int64(s.c.count))
	s.c.mu.Unlock()
	boom.Store(true)
	require.PanicsWithValue(t, "observer bug", func() { _, _ = s.Begin(ctx, "", "k", nil) })
	s.c.mu.Lock()
	busy := len(s.c.busy)
	s.c.mu.Unlock()
	require.Zero(t, busy)
	boom.Store(false)
	got, err := s.Begin(ctx, "", "k", nil)
	require.NoError(t, err)
	require.Equal(t, OutcomeCompleted, got.Outcome)
}

// loopless returns a completer of a new store (on a redis-server of its
// own) whose loop is not started, so that a test plays it, and an attempt
// begun on key "k".
func loopless(t *testing.T) (*completer, Begun) {
	t.Helper()
	srv := redistest.Start(t)
	s, err := New(t.Context(), &Options{Client: srv.Client(t), NoL1: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	c := &completer{s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), busy: map[string]chan struct{}{}}
	return c, b
}

// first returns a pair's first value.
func first[A, B any](a A, _ B) A { return a }
