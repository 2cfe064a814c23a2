package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestNew_Options(t *testing.T) {
	t.Parallel()
	_, err := idempotency.New(t.Context(), nil)
	require.ErrorIs(t, err, idempotency.ErrInvalidOptions)

	srv := redistest.Start(t)
	noCtx := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = noCtx.Close() })
	_, err = idempotency.New(t.Context(), &idempotency.Options{Client: noCtx})
	require.ErrorIs(t, err, idempotency.ErrInvalidOptions, "a client that ignores deadlines is refused")

	rdb := srv.Client(t)
	tests := []struct {
		name string
		o    idempotency.Options
	}{
		{"negative lease", idempotency.Options{Lease: -time.Second}},
		{"heartbeat not shorter than lease", idempotency.Options{Lease: time.Second, Heartbeat: time.Second}},
		{"namespace with a brace", idempotency.Options{Namespace: "a{b"}},
		{"negative L1", idempotency.Options{L1MaxBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Client = rdb
			_, err := idempotency.New(t.Context(), &tt.o)
			require.ErrorIs(t, err, idempotency.ErrInvalidOptions)
		})
	}
}

func TestNew_EvictionPolicy(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory-policy", "volatile-lru")
	rdb := srv.Client(t)
	_, err := idempotency.New(t.Context(), &idempotency.Options{Client: rdb})
	require.ErrorIs(t, err, idempotency.ErrEvictingRedis)
	require.Contains(t, err.Error(), "volatile-lru")

	s, err := idempotency.New(t.Context(), &idempotency.Options{Client: rdb, AllowEvictingRedis: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")

	// A user that may not run CONFIG: the policy is unknown, and unknown is
	// refused too.
	require.NoError(t, rdb.Do(t.Context(), "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-config").Err())
	o := srv.Options()
	o.Username, o.Password = "app", "pw"
	app := redis.NewClient(o)
	t.Cleanup(func() { _ = app.Close() })
	_, err = idempotency.New(t.Context(), &idempotency.Options{Client: app})
	require.ErrorIs(t, err, idempotency.ErrEvictingRedis)
	require.Contains(t, err.Error(), "NOPERM")
}

func TestNew_RedisDown(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	srv.Kill()
	_, err := idempotency.New(t.Context(), &idempotency.Options{Client: rdb, Timeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, idempotency.ErrUnavailable)
}

func TestStore_BeginCompleteReplay(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	for _, noL1 := range []bool{false, true} {
		s, ev := newStore(t, rdb, &idempotency.Options{Namespace: "basic" + map[bool]string{true: "nol1"}[noL1], NoL1: noL1})
		ctx := t.Context()
		b, err := s.Begin(ctx, "user-1", "key-1", []byte("payload"))
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeAcquired, b.Outcome)
		a := b.Attempt
		require.Equal(t, 1, a.Number)
		require.False(t, a.TakenOver)
		require.Positive(t, a.Fence)

		// Another scope is another record.
		other, err := s.Begin(ctx, "user-2", "key-1", []byte("other payload"))
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeAcquired, other.Outcome)

		b2, err := s.Begin(ctx, "user-1", "key-1", []byte("payload"))
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeInFlight, b2.Outcome)
		require.Positive(t, b2.RetryAfter)
		require.LessOrEqual(t, b2.RetryAfter, idempotency.DefaultLease)

		res := idempotency.Result{Status: 201, Header: http.Header{"Location": {"/bookings/7"}}, Body: []byte(`{"id":7}`)}
		require.NoError(t, a.Complete(ctx, res))

		info, err := s.Inspect(ctx, "user-1", "key-1")
		require.NoError(t, err)
		require.Equal(t, idempotency.StateCompleted, info.State)
		require.Equal(t, a.Fence, info.Fence)
		require.InDelta(t, idempotency.DefaultRetention, info.TTL, float64(time.Minute))

		require.Eventually(t, func() bool { // an L1 write is asynchronous
			b3, err := s.Begin(ctx, "user-1", "key-1", []byte("payload"))
			require.NoError(t, err)
			require.Equal(t, idempotency.OutcomeCompleted, b3.Outcome)
			require.Equal(t, res.Status, b3.Result.Status)
			require.Equal(t, res.Body, b3.Result.Body)
			require.Equal(t, "/bookings/7", b3.Result.Header.Get("Location"))
			return b3.FromL1 != noL1
		}, 5*time.Second, time.Millisecond)

		_, err = s.Begin(ctx, "user-1", "key-1", []byte("another payload"))
		require.ErrorIs(t, err, idempotency.ErrMismatch, "L1 knows the fingerprint too")
		if !noL1 {
			require.Positive(t, ev.count(idempotency.EventReplayed))
		}
	}
}

func TestStore_InvalidKey(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, nil)
	for _, k := range []string{"", strings.Repeat("k", idempotency.MaxKeyBytes+1), "new\nline", "é"} {
		_, err := s.Begin(t.Context(), "", k, nil)
		require.ErrorIs(t, err, idempotency.ErrInvalidKey, "%q", k)
	}
}

// TestStore_Heartbeat: a heartbeat moves the lease deadline, so a request
// that would have found the first lease expired finds the request in
// flight.
func TestStore_Heartbeat(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	// Long leases and offsets, so that the real time between two calls
	// (seconds at worst, on a busy machine) cannot change an outcome.
	const lease = 100 * time.Second
	owner, _ := newStore(t, rdb, &idempotency.Options{Lease: lease})
	other, _ := newStore(t, rdb, &idempotency.Options{Lease: lease})
	ctx := t.Context()
	b, err := owner.Begin(ctx, "", "hb", nil)
	require.NoError(t, err)

	idempotency.SetClockOffset(owner, 80*time.Second)
	require.NoError(t, b.Attempt.Heartbeat(ctx)) // the lease now ends at +180 s
	idempotency.SetClockOffset(other, 120*time.Second)
	b2, err := other.Begin(ctx, "", "hb", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeInFlight, b2.Outcome)
	require.InDelta(t, 60*time.Second, b2.RetryAfter, float64(10*time.Second))

	// Past the extended lease it is taken over.
	idempotency.SetClockOffset(other, 190*time.Second)
	b3, err := other.Begin(ctx, "", "hb", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeTakenOver, b3.Outcome)
	require.Greater(t, b3.Attempt.Fence, b.Attempt.Fence)
	require.Equal(t, 2, b3.Attempt.Number)
}

// TestStore_StaleOwnerCannotOverwrite is the race of
// powertools-lambda-typescript #5714 (recovery that reads, decides, then
// writes with an unconditional SET over a completed result) and of
// powertools-lambda-python #8386 (a live in-progress record reclaimed as
// an orphan), made deterministic with the scripts' clock offset. Here every
// decision is taken in one script on the record as it is then.
func TestStore_StaleOwnerCannotOverwrite(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	ctx := t.Context()
	lease := 10 * time.Second
	newPair := func(ns string) (*idempotency.Store, *idempotency.Store) {
		a, _ := newStore(t, rdb, &idempotency.Options{Namespace: ns, Lease: lease})
		b, _ := newStore(t, rdb, &idempotency.Options{Namespace: ns, Lease: lease})
		return a, b
	}
	resA := idempotency.Result{Status: 200, Body: []byte("A")}
	resB := idempotency.Result{Status: 200, Body: []byte("B")}

	t.Run("snapshot of a live record, completed before the retry decides", func(t *testing.T) {
		sa, sb := newPair("race1")
		a, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		// B reads A's record: in flight (Powertools: B's GET snapshot).
		seen, err := sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeInFlight, seen.Outcome)
		// A completes, and A's lease deadline passes.
		require.NoError(t, a.Attempt.Complete(ctx, resA))
		idempotency.SetClockOffset(sb, 2*lease)
		// B decides again, on the record as it is now: a replay, not an
		// orphan to take over.
		again, err := sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeCompleted, again.Outcome)
		require.Equal(t, resA.Body, again.Result.Body)
	})

	t.Run("a live lease is never taken over", func(t *testing.T) {
		// An hour's lease, looked at a minute before it ends: no amount of
		// scheduling delay between the two calls makes it expire.
		sa, _ := newStore(t, rdb, &idempotency.Options{Namespace: "race2", Lease: time.Hour})
		sb, _ := newStore(t, rdb, &idempotency.Options{Namespace: "race2", Lease: time.Hour})
		_, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		idempotency.SetClockOffset(sb, 59*time.Minute)
		b, err := sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeInFlight, b.Outcome)
	})

	t.Run("the stale owner's completion loses to the newer fence", func(t *testing.T) {
		sa, sb := newPair("race3")
		a, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		idempotency.SetClockOffset(sb, 2*lease)
		b, err := sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeTakenOver, b.Outcome)
		require.Greater(t, b.Attempt.Fence, a.Attempt.Fence)

		// A wakes up and tries to finish: heartbeat, checkpoint, complete
		// and fail all refuse, and nothing changes.
		require.ErrorIs(t, a.Attempt.Heartbeat(ctx), idempotency.ErrLeaseLost)
		require.ErrorIs(t, a.Attempt.Checkpoint(ctx, "stale"), idempotency.ErrLeaseLost)
		require.ErrorIs(t, a.Attempt.Complete(ctx, resA), idempotency.ErrLeaseLost)

		require.NoError(t, b.Attempt.Complete(ctx, resB))
		info, err := sb.Inspect(ctx, "", "k")
		require.NoError(t, err)
		require.Equal(t, idempotency.StateCompleted, info.State)
		require.Equal(t, b.Attempt.Fence, info.Fence)
		require.Empty(t, info.RecoveryPoint, "the stale checkpoint was refused")

		c, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeCompleted, c.Outcome)
		require.Equal(t, resB.Body, c.Result.Body)
	})

	t.Run("a completed record is never overwritten", func(t *testing.T) {
		sa, sb := newPair("race4")
		a, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		idempotency.SetClockOffset(sb, 2*lease)
		b, err := sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.NoError(t, b.Attempt.Complete(ctx, resB))
		// The stale owner comes after the completion: refused, and its
		// Fail does not reopen the record either.
		require.ErrorIs(t, a.Attempt.Complete(ctx, resA), idempotency.ErrLeaseLost)
		require.NoError(t, a.Attempt.Fail(ctx), "Fail after Complete refused is a no-op")
		idempotency.SetClockOffset(sb, 10*lease)
		c, err := sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeCompleted, c.Outcome)
		require.Equal(t, resB.Body, c.Result.Body)
	})

	t.Run("the stale owner cannot fail the newer attempt", func(t *testing.T) {
		sa, sb := newPair("race5")
		a, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		idempotency.SetClockOffset(sb, 2*lease)
		_, err = sb.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.ErrorIs(t, a.Attempt.Fail(ctx), idempotency.ErrLeaseLost)
		idempotency.SetClockOffset(sa, 0)
		c, err := sa.Begin(ctx, "", "k", nil)
		require.NoError(t, err)
		require.Equal(t, idempotency.OutcomeInFlight, c.Outcome)
	})
}

// TestStore_Keep: the context Keep returns is cancelled with ErrLeaseLost
// once a heartbeat finds a newer attempt.
func TestStore_Keep(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	sa, evA := newStore(t, rdb, &idempotency.Options{Lease: time.Second, Heartbeat: 20 * time.Millisecond})
	sb, _ := newStore(t, rdb, &idempotency.Options{Lease: time.Second})
	a, err := sa.Begin(t.Context(), "", "keep", nil)
	require.NoError(t, err)
	kctx, stop := a.Attempt.Keep(t.Context())
	defer stop()
	got, ok := idempotency.FromContext(kctx)
	require.True(t, ok)
	require.Same(t, a.Attempt, got)

	idempotency.SetClockOffset(sb, time.Hour)
	b, err := sb.Begin(t.Context(), "", "keep", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeTakenOver, b.Outcome)
	<-kctx.Done()
	require.ErrorIs(t, context.Cause(kctx), idempotency.ErrLeaseLost)
	require.Equal(t, 1, evA.count(idempotency.EventLeaseLost))
	stop()
	stop() // stop is idempotent
}

func TestStore_Fail(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, nil)
	ctx := t.Context()
	a, err := s.Begin(ctx, "", "f", []byte("p"))
	require.NoError(t, err)
	require.NoError(t, a.Attempt.Checkpoint(ctx, "validated"))
	require.NoError(t, a.Attempt.Fail(ctx))
	info, err := s.Inspect(ctx, "", "f")
	require.NoError(t, err)
	require.Equal(t, idempotency.StateFailed, info.State)

	// The key stays bound to its payload.
	_, err = s.Begin(ctx, "", "f", []byte("q"))
	require.ErrorIs(t, err, idempotency.ErrMismatch)
	// The next request runs at once, knowing where the last one got.
	b, err := s.Begin(ctx, "", "f", []byte("p"))
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeRetry, b.Outcome)
	require.Greater(t, b.Attempt.Fence, a.Attempt.Fence)
	require.Equal(t, "validated", b.Attempt.RecoveryPoint)
	require.Equal(t, 2, b.Attempt.Number)
}

// TestStore_DerivedKey: every attempt of a record derives the same key for
// a downstream call, other records another one, and the raw key is not in
// it.
func TestStore_DerivedKey(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{Lease: time.Second})
	ctx := t.Context()
	a, err := s.Begin(ctx, "u", "derive-me", nil)
	require.NoError(t, err)
	idempotency.SetClockOffset(s, time.Hour)
	b, err := s.Begin(ctx, "u", "derive-me", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeTakenOver, b.Outcome)
	require.Equal(t, a.Attempt.DerivedKey("stripe"), b.Attempt.DerivedKey("stripe"))
	require.NotEqual(t, a.Attempt.DerivedKey("stripe"), a.Attempt.DerivedKey("email"))
	c, err := s.Begin(ctx, "v", "derive-me", nil)
	require.NoError(t, err)
	require.NotEqual(t, a.Attempt.DerivedKey("stripe"), c.Attempt.DerivedKey("stripe"))
	require.NotContains(t, a.Attempt.DerivedKey("stripe"), "derive-me")
}

// TestStore_Corrupt: a record this package did not write is refused, and
// left alone: it is never run on a guess.
func TestStore_Corrupt(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, ev := newStore(t, rdb, &idempotency.Options{Namespace: "corrupt", NoL1: true})
	ctx := t.Context()
	b, err := s.Begin(ctx, "", "c1", nil)
	require.NoError(t, err)
	require.NoError(t, b.Attempt.Complete(ctx, idempotency.Result{Status: 200}))
	keys, err := rdb.Keys(ctx, "corrupt:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	key := keys[0]
	good, err := rdb.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	restore := func() {
		require.NoError(t, rdb.Del(ctx, key).Err())
		require.NoError(t, rdb.HSet(ctx, key, good).Err())
	}

	cases := []struct {
		name    string
		breakIt func()
	}{
		{"a string", func() { require.NoError(t, rdb.Set(ctx, key, "garbage", 0).Err()) }},
		{"a fence that is not a number", func() { require.NoError(t, rdb.HSet(ctx, key, "fe", "x").Err()) }},
		{"an unknown state", func() {
			require.NoError(t, rdb.HSet(ctx, key, "s", "x", "k", "a", "fp", strings.Repeat("0", 64), "o", "o", "fe", 1, "ld", 1, "n", 1).Err())
		}},
		{"a completed record without a result", func() { require.NoError(t, rdb.HDel(ctx, key, "res").Err()) }},
		{"a result that does not decode", func() { require.NoError(t, rdb.HSet(ctx, key, "s", "c", "res", "not an envelope").Err()) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			restore()
			c.breakIt()
			before, err := rdb.Dump(ctx, key).Result()
			require.NoError(t, err)
			idempotency.SetClockOffset(s, 48*time.Hour)
			_, err = s.Begin(ctx, "", "c1", nil)
			require.ErrorIs(t, err, idempotency.ErrCorrupt)
			after, err := rdb.Dump(ctx, key).Result()
			require.NoError(t, err)
			require.Equal(t, before, after, "the record is left as it was")
		})
	}
	require.Positive(t, ev.count(idempotency.EventCorrupt))
}

// TestStore_NoRawKey scans the namespace: neither the key nor the scope
// reaches Redis, in names or in values.
func TestStore_NoRawKey(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{Namespace: "raw", Secret: []byte("pepper")})
	ctx := t.Context()
	const key, scope = "client-key-3f9a2c71", "alice@example.com"
	b, err := s.Begin(ctx, scope, key, []byte("body"))
	require.NoError(t, err)
	require.NoError(t, b.Attempt.Checkpoint(ctx, "charged"))
	require.NoError(t, b.Attempt.Complete(ctx, idempotency.Result{Status: 200, Body: []byte("ok")}))

	var n int
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		n++
		require.NotContains(t, k, key)
		require.NotContains(t, k, scope)
		vals, err := rdb.HGetAll(ctx, k).Result()
		require.NoError(t, err)
		for f, v := range vals {
			require.NotContains(t, f+v, key)
			require.NotContains(t, f+v, scope)
		}
	}
	require.NoError(t, iter.Err())
	require.Equal(t, 1, n)
}

// TestStore_Do runs the generic helper: once, replayed, errors fail the
// attempt.
func TestStore_Do(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, nil)
	ctx := t.Context()
	runs := 0
	fn := func(ctx context.Context, a *idempotency.Attempt) (idempotency.Result, error) {
		runs++
		if runs == 1 {
			return idempotency.Result{}, errors.New("downstream down")
		}
		return idempotency.Result{Status: 200, Body: []byte("paid")}, nil
	}
	_, _, err := s.Do(ctx, "", "do", nil, fn)
	require.EqualError(t, err, "downstream down")
	res, replayed, err := s.Do(ctx, "", "do", nil, fn)
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, "paid", string(res.Body))
	res, replayed, err = s.Do(ctx, "", "do", nil, fn)
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, "paid", string(res.Body))
	require.Equal(t, 2, runs)

	require.Panics(t, func() {
		_, _, _ = s.Do(ctx, "", "panics", nil, func(context.Context, *idempotency.Attempt) (idempotency.Result, error) {
			panic("boom")
		})
	})
	info, err := s.Inspect(ctx, "", "panics")
	require.NoError(t, err)
	require.Equal(t, idempotency.StateFailed, info.State)

	// In flight.
	b, err := s.Begin(ctx, "", "busy", nil)
	require.NoError(t, err)
	_, _, err = s.Do(ctx, "", "busy", nil, fn)
	var inf *idempotency.InFlightError
	require.ErrorAs(t, err, &inf)
	require.ErrorIs(t, err, idempotency.ErrInFlight)
	require.NoError(t, b.Attempt.Fail(ctx))
}

// TestAttempt_CheckpointAfterClientLeft: a recovery point is recorded even
// when the request's context has ended (its client went away right after
// the charge): the attempt that takes over must resume after it.
func TestAttempt_CheckpointAfterClientLeft(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{NoL1: true})
	b, err := s.Begin(t.Context(), "", "k", nil)
	require.NoError(t, err)
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, b.Attempt.Checkpoint(gone, "charged"))
	info, err := s.Inspect(t.Context(), "", "k")
	require.NoError(t, err)
	require.Equal(t, "charged", info.RecoveryPoint)
}
