package demo_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/examples/booking/demo"
	"github.com/tiercache/tiercache/examples/booking/internal/dbtest"
	"github.com/tiercache/tiercache/internal/redistest"
)

// small keeps a test run short: the seed takes a fraction of a second.
var small = booking.SeedOptions{Profiles: 1000, Experts: 200, Appointments: 3000, Days: 7}

// checkCounters checks that a report's counters add up.
func checkCounters(t *testing.T, rep *demo.Report) {
	t.Helper()
	require.Positive(t, rep.Reads)
	require.Equal(t, rep.Reads, rep.Requests(), "L1 hits + misses = requests")
	var sum uint64
	for _, s := range rep.Instances {
		require.Positive(t, s.L1Hits+s.Misses, "every instance served reads")
		sum += s.L1Hits + s.Misses
	}
	require.Equal(t, rep.Reads, sum)
	require.Positive(t, rep.Total.L1Hits)
	require.LessOrEqual(t, rep.Total.L2Hits, rep.Total.Misses)
	require.LessOrEqual(t, rep.DBReads, rep.Reads)
	require.Equal(t, rep.Total.Loads, rep.DBReads, "every load is one query, and only loads query")
	require.Equal(t, rep.Bookings+rep.Cancels+rep.Updates+rep.SlotTaken, rep.DBWrites)
	require.Positive(t, rep.DBWrites)
	require.Zero(t, rep.Errors, "first error: %v", rep.FirstError)
	require.Zero(t, rep.InvalidateErrors)
	require.Positive(t, rep.P50)
	require.GreaterOrEqual(t, rep.P99, rep.P50)
	require.Positive(t, rep.StaleChecked)
}

func TestRun_SQLiteWithRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var out bytes.Buffer
	rep, err := demo.Run(t.Context(), demo.Config{
		Duration:  1500 * time.Millisecond,
		Workers:   4,
		ReadRatio: 0.95,
		Seed:      small,
		RedisAddr: srv.Addr(),
		L2Timeout: 5 * time.Second, // the test checks counters, not latency, on a loaded machine
		Out:       &out,
		Progress:  500 * time.Millisecond,
	})
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())
	checkCounters(t, rep)
	require.Equal(t, srv.Addr(), rep.Redis)
	require.Empty(t, rep.RedisNote)
	require.Positive(t, rep.Total.L2Hits, "the instances share L2")
	require.Zero(t, rep.Total.Fallbacks)
	require.Positive(t, rep.BusSent, "writes were published on the bus")
	require.Positive(t, rep.BusReceived, "and heard by the other instance")
	require.Positive(t, rep.RedisKeysDeleted)
	require.Zero(t, srv.Client(t).DBSize(t.Context()).Val(), "the run removed its keys")
	require.Contains(t, out.String(), "reads (")
	require.Contains(t, out.String(), "L1 hit rate")
	require.Contains(t, out.String(), "Redis "+srv.Addr())
	require.Contains(t, out.String(), "booking app's targets")
	require.Len(t, rep.Targets(), 5)
}

// TestRun_Metrics checks the Prometheus endpoint that a run serves.
func TestRun_Metrics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		_, err := demo.Run(ctx, demo.Config{Duration: time.Hour, Seed: small, Out: &out, Progress: 10 * time.Millisecond, MetricsAddr: "127.0.0.1:0"})
		done <- err
	}()
	var url string
	require.Eventually(t, func() bool {
		s := out.String()
		i := strings.Index(s, "Prometheus metrics at ")
		if i < 0 || !strings.Contains(s, "reads (") {
			return false
		}
		url = strings.Fields(s[i+len("Prometheus metrics at "):])[0]
		return true
	}, 30*time.Second, 10*time.Millisecond)
	resp, err := http.Get(url) //nolint:noctx // a test's loopback request
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, m := range []string{"tiercache_requests_total", `cache_name="demo.A.profiles"`, `cache_name="demo.B.profiles"`} {
		require.Contains(t, string(body), m)
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Contains(t, out.String(), "metrics: "+url)
}

func TestRun_RedisAbsent(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	rep, err := demo.Run(t.Context(), demo.Config{
		Duration:  time.Second,
		Workers:   4,
		ReadRatio: 0.95,
		Seed:      small,
		RedisAddr: closedAddr(t),
		Out:       &out,
	})
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())
	checkCounters(t, rep)
	require.Empty(t, rep.Redis)
	require.Contains(t, rep.RedisNote, "not reachable")
	require.Equal(t, 1, strings.Count(out.String(), "not reachable"), "one line says so")
	require.Zero(t, rep.Total.L2Hits)
	require.Zero(t, rep.Total.Fallbacks, "no L2 configured, so nothing falls back")
}

func TestRun_Postgres(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	rep, err := demo.Run(t.Context(), demo.Config{
		Duration:    time.Second,
		Workers:     4,
		ReadRatio:   0.95,
		Seed:        small,
		DatabaseURL: dbtest.DSN(),
		Out:         &out,
	})
	require.NoError(t, err, out.String())
	checkCounters(t, rep)
	require.Contains(t, rep.Backend, "PostgreSQL")

	// The run dropped its schema.
	schema := strings.TrimSuffix(strings.TrimPrefix(rep.Backend, "PostgreSQL (schema "), ")")
	pool, err := pgxpool.New(t.Context(), dbtest.DSN())
	require.NoError(t, err)
	defer pool.Close()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, schema).Scan(&n))
	require.Zero(t, n, "schema %s is still there", schema)
}

func TestRun_Cancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var out lockedBuffer
	done := make(chan struct{})
	var rep *demo.Report
	var err error
	go func() {
		defer close(done)
		rep, err = demo.Run(ctx, demo.Config{Duration: time.Hour, Seed: small, Out: &out, Progress: 10 * time.Millisecond})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "reads (") }, 30*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, rep)
	require.Equal(t, rep.Reads, rep.Requests())
}

func TestRun_BadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []demo.Config{{ReadRatio: 2}, {Zipf: 0.5}, {Duration: -time.Second}} {
		_, err := demo.Run(t.Context(), cfg)
		require.Error(t, err)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
