package benchmarks

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/benchmarks/internal/pgorigin"
	"github.com/tiercache/tiercache/benchmarks/internal/redisproc"
)

// keyTTL is the time to live of everything the benchmarks write to Redis,
// so that a run against a shared REDIS_ADDR leaves nothing behind for long
// (the benchmarks never FLUSHALL).
const keyTTL = 10 * time.Minute

// pgRows is the size of the per-run PostgreSQL table.
const pgRows = 10000

var (
	// runID makes the keys and tables of this run unique.
	runID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)

	redisOnce sync.Once
	redisSrv  *redisproc.Server
	redisErr  error

	pgOnce  sync.Once
	pgTable *pgorigin.Table
	pgErr   error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if pgTable != nil {
		if err := pgTable.Drop(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if redisSrv != nil {
		_ = redisSrv.Close()
	}
	os.Exit(code)
}

// redisAddr returns the address of the run's Redis, starting it on first use.
func redisAddr(b *testing.B) string {
	b.Helper()
	redisOnce.Do(func() { redisSrv, redisErr = redisproc.Start() })
	if redisErr != nil {
		b.Fatal(redisErr)
	}
	return redisSrv.Addr()
}

// newRedis returns a go-redis client of the run's Redis, closed at the end
// of the benchmark.
func newRedis(b *testing.B) *redis.Client {
	b.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(b), ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// table returns the run's PostgreSQL table, creating it on first use.
func table(b *testing.B) *pgorigin.Table {
	b.Helper()
	pgOnce.Do(func() { pgTable, pgErr = pgorigin.Create(context.Background(), pgorigin.DSN(), pgRows) })
	if pgErr != nil {
		b.Fatal(pgErr)
	}
	return pgTable
}

// namespace returns a Redis key namespace unique to this run and name.
func namespace(name string) string { return "bench-" + runID + "-" + name }

// quick reports whether the run asked for one iteration per benchmark
// (-benchtime=1x, as CI does): the workloads that run fixed-size passes
// then make them small.
func quick() bool {
	f := flag.Lookup("test.benchtime")
	return f != nil && f.Value.String() == "1x"
}

// dropNamespace deletes the keys of namespace ns, which is unique to this
// run (SCAN + UNLINK; never FLUSHALL), so that passes do not pile values up
// in Redis. The pattern has a leading * because tiercache writes
// "tc:<len>:<ns>:<key>".
func dropNamespace(b *testing.B, rdb *redis.Client, ns string) {
	b.Helper()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, "*"+ns+":*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	flush := func() {
		if len(batch) > 0 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			flush()
		}
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	flush()
}

// pinned holds the names of the benchmarks pinProcs has seen.
var pinned sync.Map

// pinProcs makes the first run of benchmark b use the first GOMAXPROCS of
// -test.cpu. The testing package sets GOMAXPROCS for each -cpu value only
// after a benchmark's first run (b.N = 1), which therefore runs with the
// GOMAXPROCS left by the benchmark before (the last -cpu value; Go issue
// 49980), and that run is the one reported when it alone lasts the
// benchtime or with -benchtime=1x: without this, a Zipf cold pass
// reported under -cpu=1 ran with GOMAXPROCS 2 (8 workers, and 2 rueidis
// connections).
func pinProcs(b *testing.B) {
	if _, seen := pinned.LoadOrStore(b.Name(), true); seen {
		return
	}
	f := flag.Lookup("test.cpu")
	if f == nil {
		return
	}
	first, _, _ := strings.Cut(f.Value.String(), ",")
	if n, err := strconv.Atoi(first); err == nil && n > 0 {
		prev := runtime.GOMAXPROCS(n)
		b.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
