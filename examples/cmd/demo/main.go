// Command demo runs tiercache in front of a booking database: it seeds
// profiles, experts and appointments, drives a mix of Zipf-distributed reads
// and some writes through two cache instances (as two application
// instances would run), prints a progress line while it runs and a table of
// what each tier answered at the end.
//
// With no configuration it uses SQLite in a temporary folder and Redis at
// 127.0.0.1:6379 if it answers (L1-only if not). Run it with -h for the
// flags and environment variables. The work is done by package
// github.com/tiercache/tiercache/examples/booking/demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/examples/booking/demo"
	"github.com/tiercache/tiercache/idempotency/idemdemo"
	notifydemo "github.com/tiercache/tiercache/notify/demo"
	rldemo "github.com/tiercache/tiercache/ratelimit/demo"
	sessdemo "github.com/tiercache/tiercache/session/demo"
)

const (
	defaultRedisAddr = "127.0.0.1:6379"
	// defaultMetricsAddr is OpenTelemetry's usual port for a Prometheus
	// exporter.
	defaultMetricsAddr = "127.0.0.1:9464"
)

func main() {
	// go-redis logs dial failures itself; the demo reports Redis's state
	// in one line of its own.
	redis.SetLogger(nopLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run parses args and the environment (getenv) and runs the demo, writing
// to stdout; flag errors and -h go to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg.Out = stdout
	if f, ok := stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			cfg.Terminal = true
		}
	}
	// Bookings queue their confirmations and count in the activity
	// figures, when Redis answers.
	var nd *notifydemo.Demo
	var ndClient *redis.Client
	if cfg.RedisAddr != "" {
		ndClient = newClient(cfg.RedisAddr)
		defer ndClient.Close()
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		if ndClient.Ping(pctx).Err() == nil {
			if nd, err = notifydemo.Start(ctx, notifydemo.Config{Client: ndClient}); err != nil {
				cancel()
				return err
			}
			cfg.OnBooking = func(ctx context.Context, a booking.Appointment) { nd.Booked(ctx, a.ID, a.GuestID, a.ExpertID) }
		}
		cancel()
	}
	rep, err := demo.Run(ctx, cfg)
	var ndRep *notifydemo.Report
	if nd != nil {
		var nerr error
		ndRep, nerr = nd.Stop(context.WithoutCancel(ctx))
		if nerr != nil && err == nil {
			err = nerr
		}
	}
	if errors.Is(err, context.Canceled) && rep != nil {
		return nil // interrupted: the table was printed
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if ndRep == nil {
		fmt.Fprintln(stdout, "Notification and dashboard demo skipped: it needs Redis.")
	} else if err := ndRep.Print(stdout); err != nil {
		return err
	}
	if err := primitives(ctx, rep.Redis, cfg.L2Timeout, stdout); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// primitives runs the demos of the primitives beside the cache (rate
// limits, idempotency and one-time codes, sessions) and prints their
// tables. addr is the Redis the cache run used, empty if it had none: then
// only the rate limits run (showing their outage modes). Each demo keeps
// its keys in a namespace of its own for this run. timeout bounds the
// session demo's Redis calls (0: session's default).
func primitives(ctx context.Context, addr string, timeout time.Duration, w io.Writer) error {
	var rdb redis.UniversalClient
	if addr != "" {
		rdb = newClient(addr)
		defer rdb.Close()
	}
	fmt.Fprintln(w)
	rl, err := rldemo.Run(ctx, rldemo.Config{Client: rdb})
	if err != nil {
		return fmt.Errorf("rate limit demo: %w", err)
	}
	if err := rl.Print(w); err != nil {
		return err
	}
	if rdb == nil {
		fmt.Fprintln(w, "\nIdempotency and session demos skipped: they need Redis.")
		return nil
	}
	// The shared development Redis may evict keys; the demo's keys are
	// short-lived and nothing depends on them afterwards.
	idem, err := idemdemo.Run(ctx, idemdemo.Config{Client: rdb, AllowEvictingRedis: true})
	if err != nil {
		return fmt.Errorf("idempotency demo: %w", err)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "idempotency and one-time codes\tcount")
	for _, row := range idem.Table() {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sess, err := sessdemo.Run(ctx, sessdemo.Config{NewClient: func() redis.UniversalClient { return newClient(addr) }, Timeout: timeout})
	if err != nil {
		return fmt.Errorf("session demo: %w", err)
	}
	fmt.Fprintln(w)
	return sess.Print(w)
}

// newClient returns a client of addr (host:port or a redis:// URL, which
// the cache run has already parsed) with ContextTimeoutEnabled, as the
// primitives require.
func newClient(addr string) *redis.Client {
	o := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		o, _ = redis.ParseURL(addr) // parsed by the cache run
	}
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o)
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (demo.Config, error) {
	var cfg demo.Config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: go run ./cmd/demo [flags]   (from the examples folder)

Seeds a booking database (profiles, experts, appointments), then drives a
mix of reads (ids drawn from a Zipf distribution, so a few are hot) and
some writes (bookings, cancellations, profile updates) through two cache
instances, each with its own Redis client and invalidation bus, as two
application instances would.
It prints a progress line every second and, at the end, a table: requests,
L1 and L2 hit rates, database queries made against what they would be
without the cache, fallbacks, stale reads, read latency p50/p99, and the
booking application's targets beside what was measured. With Redis, each
booking also queues confirmations for its guest (email) and expert (push),
sent as digests, and counts in activity figures: a table shows the
confirmations queued, duplicates absorbed, sends, and a dashboard figure
read through a tier cache beside the aggregate query's latency. While it runs it
serves the caches' metrics for Prometheus at http://127.0.0.1:9464/metrics
(-metrics). It removes what it created (the SQLite folder or PostgreSQL
schema, and its keys in Redis, found with SCAN on its own namespace).

Environment:
  DATABASE_URL  PostgreSQL URL (the demo works in a schema of its own and
                drops it at the end); unset: SQLite in a temporary folder
  REDIS_ADDR    Redis host:port or redis:// URL (default 127.0.0.1:6379);
                if it does not answer, the demo says so and runs L1-only

Flags:
`)
		fs.PrintDefaults()
	}
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to run the mix (the hit-rate target is judged on its second half,\nonce the caches are warm)")
	fs.IntVar(&cfg.Workers, "workers", 8, "goroutines issuing operations")
	fs.Float64Var(&cfg.ReadRatio, "read-ratio", 0.98, "share of operations that are reads, in [0, 1]; the writes are\n50% bookings, 20% cancellations, 30% profile updates")
	fs.Float64Var(&cfg.Zipf, "zipf", 1.1, "Zipf exponent (> 1) of the ids read and written; larger is more skewed")
	fs.IntVar(&cfg.Seed.Profiles, "seed-profiles", 5000, "profiles to seed")
	fs.IntVar(&cfg.Seed.Experts, "seed-experts", 2000, "experts to seed (each is also a profile)")
	fs.IntVar(&cfg.Seed.Appointments, "seed-appointments", 30000, "appointments to seed")
	fs.IntVar(&cfg.Seed.Days, "seed-days", 14, "days, from today, that the appointments cover")
	fs.DurationVar(&cfg.TTL, "ttl", 5*time.Minute, "how long a value stays in Redis (L2)")
	fs.DurationVar(&cfg.L1TTL, "l1-ttl", time.Minute, "how long a value stays in process (L1)")
	fs.DurationVar(&cfg.L2Timeout, "redis-timeout", 0, "bounds each Redis call of the caches and the session demo; 0: the libraries'\ndefaults (100 ms for the caches, 200 ms for sessions)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", getenv("DATABASE_URL"), "PostgreSQL URL; overrides $DATABASE_URL; empty: SQLite")
	redisAddr := getenv("REDIS_ADDR")
	if redisAddr == "" {
		redisAddr = defaultRedisAddr
	}
	fs.StringVar(&cfg.RedisAddr, "redis", redisAddr, "Redis address; overrides $REDIS_ADDR; empty: no Redis (L1-only)")
	fs.StringVar(&cfg.MetricsAddr, "metrics", defaultMetricsAddr, "address of the Prometheus endpoint (http://ADDR/metrics) while the demo runs;\nempty: none")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.ReadRatio == 1 {
		cfg.NoWrites = true
	}
	return cfg, nil
}

// nopLogger discards go-redis's log lines.
type nopLogger struct{}

func (nopLogger) Printf(context.Context, string, ...any) {}
