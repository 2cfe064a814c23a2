package idempotency_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
)

// The crash-point matrix. A "book and pay" handler charges a payment
// provider, books a slot in a database and answers 201; the process running
// it dies (or its request is cancelled) at one of four points, and the
// test checks what the retry gets, and that there is one charge and one
// booking whatever happened:
//
//	point                         process dies (subprocess)        context cancelled (client left)
//	before the work               409 until the lease ends, then   the attempt fails: the retry runs
//	                              the retry runs (taken over)      at once
//	during the work (charged)     409, then the retry runs with    the attempt fails: the retry runs
//	                              RecoveryPoint "charged"; the     at once with RecoveryPoint
//	                              provider dedupes by DerivedKey   "charged"; the provider dedupes
//	after the work, before the    409, then the retry runs with    the handler answers anyway: its
//	record completes (before or   RecoveryPoint "booked" and does  response is recorded (on a
//	after the handler wrote its   not book again; the provider     context that outlives the
//	response)                     dedupes; writes are fenced       request) and replayed
//	after the record completed    the replay, at once, byte for    the replay
//	                              byte what the dead process sent
//
// The downstream services live in the same Redis under other keys, so that
// a child process and the test share them.

const crashLease = 60 * time.Second // long: the test waits for it only with the clock offset

// downstream is the fake payment provider and booking database.
type downstream struct{ rdb redis.UniversalClient }

// charge charges once per idempotency key, as a payment provider does, and
// returns the charge's id.
func (d downstream) charge(ctx context.Context, key string) (string, error) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	if err := d.rdb.HSetNX(ctx, "psp:charges", key, hex.EncodeToString(id)).Err(); err != nil {
		return "", err
	}
	return d.rdb.HGet(ctx, "psp:charges", key).Result()
}

// bookScript writes the booking only if the fence is newer than the one it
// was last written with: the "UPDATE ... WHERE fence < $fence" of a real
// database.
var bookScript = redis.NewScript(`
local f = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) <= f then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'charge', ARGV[2])
return 1
`)

func (d downstream) book(ctx context.Context, slot, charge string, fence int64) (bool, error) {
	n, err := bookScript.Run(ctx, d.rdb, []string{"db:booking:" + slot}, fence, charge).Int()
	return n == 1, err
}

func (d downstream) counts(t *testing.T) (charges, bookings int) {
	t.Helper()
	c, err := d.rdb.HLen(t.Context(), "psp:charges").Result()
	require.NoError(t, err)
	b, err := d.rdb.Keys(t.Context(), "db:booking:*").Result()
	require.NoError(t, err)
	return int(c), len(b)
}

// bookAndPay is the handler. at is called at each crash point.
func bookAndPay(d downstream, at func(ctx context.Context, point string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		a, _ := idempotency.FromContext(ctx)
		at(ctx, "before")
		if ctx.Err() != nil {
			return
		}
		charge, err := d.charge(ctx, a.DerivedKey("charge"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if err := a.Checkpoint(ctx, "charged"); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		at(ctx, "during")
		if ctx.Err() != nil {
			return
		}
		if a.RecoveryPoint != "booked" {
			if _, err := d.book(ctx, "2027-01-05T10:00", charge, a.Fence); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			_ = a.Checkpoint(ctx, "booked")
		}
		at(ctx, "after-work")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"charge": charge, "attempt": a.Number})
		at(ctx, "written")
	}
}

// TestCrashHelper is the child process of TestCrashMatrix; it does nothing
// unless started by it.
func TestCrashHelper(t *testing.T) {
	point := os.Getenv("IDEM_CRASH_POINT")
	if point == "" {
		t.Skip("child process of TestCrashMatrix")
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("IDEM_REDIS"), ContextTimeoutEnabled: true})
	s, err := idempotency.New(context.Background(), &idempotency.Options{Client: rdb, Lease: crashLease})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	m, err := idempotency.NewMiddleware(s, nil)
	if err != nil {
		os.Exit(2)
	}
	d := downstream{rdb}
	h := m.Wrap(bookAndPay(d, func(_ context.Context, p string) {
		if p == point {
			os.Exit(3) // dies: no Fail, no Complete, no deferred function
		}
	}))
	r := doCtx(context.Background(), h, "POST", "/book", "crash-key", []byte(`{"slot":"10:00"}`))
	fmt.Println(base64.StdEncoding.EncodeToString(r.body))
	os.Exit(4) // "completed": after the record completed and the response was sent
}

func runChild(t *testing.T, addr, point string) (exitCode int, body []byte) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "IDEM_CRASH_POINT="+point, "IDEM_REDIS="+addr)
	out, err := cmd.Output()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "child output: %s", out)
	if s := strings.TrimSpace(string(out)); s != "" {
		lines := strings.Split(s, "\n")
		body, err = base64.StdEncoding.DecodeString(lines[0])
		require.NoError(t, err)
	}
	return ee.ExitCode(), body
}

func TestCrashMatrix_ProcessDies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		point    string
		exit     int
		recovery string // what the retry finds in RecoveryPoint
		replay   bool   // the retry is a replay, at once
	}{
		{point: "before", exit: 3, recovery: ""},
		{point: "during", exit: 3, recovery: "charged"},
		{point: "after-work", exit: 3, recovery: "booked"},
		{point: "written", exit: 3, recovery: "booked"},
		{point: "completed", exit: 4, replay: true},
	}
	for _, tt := range tests {
		t.Run(tt.point, func(t *testing.T) {
			t.Parallel()
			srv, rdb := startRedis(t)
			code, childBody := runChild(t, srv.Addr(), tt.point)
			require.Equal(t, tt.exit, code)

			s, _ := newStore(t, rdb, &idempotency.Options{Lease: crashLease})
			d := downstream{rdb}
			var seen atomic.Value
			h := newMiddleware(t, s, nil).Wrap(bookAndPay(d, func(ctx context.Context, p string) {
				if p == "before" {
					a, _ := idempotency.FromContext(ctx)
					seen.Store(a.RecoveryPoint)
				}
			}))
			retry := func() response { return do(t, h, "POST", "/book", "crash-key", []byte(`{"slot":"10:00"}`)) }

			if tt.replay {
				r := retry()
				require.Equal(t, http.StatusCreated, r.status)
				require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
				require.Equal(t, childBody, r.body, "byte for byte what the dead process sent")
			} else {
				r := retry()
				require.Equal(t, http.StatusConflict, r.status, "the dead owner's lease is still live")
				require.NotEmpty(t, r.header.Get("Retry-After"))
				idempotency.SetClockOffset(s, crashLease+time.Second)
				r = retry()
				require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
				require.Empty(t, r.header.Get(idempotency.HeaderReplayed))
				require.Equal(t, tt.recovery, seen.Load())
				var out struct{ Attempt int }
				require.NoError(t, json.Unmarshal(r.body, &out))
				require.Equal(t, 2, out.Attempt, "taken over")
				again := retry()
				require.Equal(t, r.body, again.body)
				require.Equal(t, "true", again.header.Get(idempotency.HeaderReplayed))
			}
			charges, bookings := d.counts(t)
			require.Equal(t, 1, charges, "one charge")
			require.Equal(t, 1, bookings, "one booking")
		})
	}
}

func TestCrashMatrix_ContextCancelled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		point    string
		outcome  string // what the retry gets
		recovery string
	}{
		{point: "before", outcome: "runs", recovery: ""},
		{point: "during", outcome: "runs", recovery: "charged"},
		{point: "after-work", outcome: "replay"},
		{point: "written", outcome: "replay"},
	}
	for _, tt := range tests {
		t.Run(tt.point, func(t *testing.T) {
			t.Parallel()
			_, rdb := startRedis(t)
			s, _ := newStore(t, rdb, &idempotency.Options{Lease: crashLease})
			d := downstream{rdb}
			var cancelFirst context.CancelFunc
			var runs atomic.Int32
			var seen atomic.Value
			h := newMiddleware(t, s, nil).Wrap(bookAndPay(d, func(ctx context.Context, p string) {
				if p == "before" {
					runs.Add(1)
					a, _ := idempotency.FromContext(ctx)
					seen.Store(a.RecoveryPoint)
				}
				if p == tt.point && runs.Load() == 1 {
					cancelFirst()
					<-ctx.Done()
				}
			}))
			ctx, cancel := context.WithCancel(t.Context())
			cancelFirst = cancel
			first := doCtx(ctx, h, "POST", "/book", "k", nil)

			r := do(t, h, "POST", "/book", "k", nil)
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			switch tt.outcome {
			case "runs":
				require.Empty(t, r.header.Get(idempotency.HeaderReplayed))
				require.Equal(t, int32(2), runs.Load(), "the retry ran at once, without waiting for the lease")
				require.Equal(t, tt.recovery, seen.Load())
			case "replay":
				require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
				require.Equal(t, first.body, r.body)
				require.Equal(t, int32(1), runs.Load())
			}
			charges, bookings := d.counts(t)
			require.Equal(t, 1, charges)
			require.Equal(t, 1, bookings)
		})
	}
}

// TestCrashMatrix_Panic: a handler that panics fails its attempt on the
// way out (the panic goes on); the retry runs at once.
func TestCrashMatrix_Panic(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, ev := newStore(t, rdb, nil)
	var runs atomic.Int32
	h := newMiddleware(t, s, nil).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	require.PanicsWithValue(t, http.ErrAbortHandler, func() { do(t, h, "POST", "/p", "k", nil) })
	require.Equal(t, 1, ev.count(idempotency.EventFailed))
	r := do(t, h, "POST", "/p", "k", nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, int32(2), runs.Load())
}

// TestFencedWrite: an attempt that was taken over while it still ran
// cannot overwrite the newer attempt's write, in the database either.
func TestFencedWrite(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	old, _ := newStore(t, rdb, &idempotency.Options{Lease: time.Second})
	cur, _ := newStore(t, rdb, &idempotency.Options{Lease: time.Second})
	ctx := t.Context()
	d := downstream{rdb}
	a, err := old.Begin(ctx, "", "fw", nil)
	require.NoError(t, err)
	idempotency.SetClockOffset(cur, time.Hour)
	b, err := cur.Begin(ctx, "", "fw", nil)
	require.NoError(t, err)
	ok, err := d.book(ctx, "s", "new", b.Attempt.Fence)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = d.book(ctx, "s", "old", a.Attempt.Fence)
	require.NoError(t, err)
	require.False(t, ok, "the stale fence is refused")
	got, err := rdb.HGet(ctx, "db:booking:s", "charge").Result()
	require.NoError(t, err)
	require.Equal(t, "new", got)
}
