package demo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/dbcache"
	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/examples/booking/pgstore"
	"github.com/tiercache/tiercache/examples/booking/sqlitestore"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// Instances is the number of cache instances the demo runs, each with its
// own caches and its own Redis client, as separate application instances
// would have.
const Instances = 2

// store is a repository the demo can seed and close.
type store interface {
	booking.Repository
	booking.Seeder
	Close() error
}

// instance is one application instance: its Redis client, invalidation
// bus and caches.
type instance struct {
	name    string
	rdb     *redis.Client   // nil: L1 only
	bus     *invalidate.Bus // nil: L1 only
	stopBus func()          // cancels bus's Run
	busDone chan struct{}   // closed when bus's Run has returned
	caches  *booking.Caches
	repo    *booking.CachedRepository
}

// Run seeds a database, drives the mix described in the package
// documentation through [Instances] cache instances for cfg.Duration (or
// until ctx ends), writes progress lines and the final table to cfg.Out, and
// returns the report. It removes everything it created: the SQLite folder
// or the PostgreSQL schema, and its keys in Redis (SCAN of its own
// namespace and UNLINK; never FLUSHALL).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &Report{Workers: cfg.Workers}
	err = run(ctx, cfg, rep)
	if rep.Elapsed > 0 {
		fmt.Fprintln(cfg.Out)
		err = errors.Join(err, rep.WriteTable(cfg.Out))
	}
	return rep, err
}

// run is Run after the defaults; its deferred calls clean up before Run
// prints the table.
func run(ctx context.Context, cfg Config, rep *Report) (err error) {
	out := cfg.Out
	runID := strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)

	st, closeStore, err := openStore(ctx, cfg, runID, rep)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeStore()) }()

	data, err := booking.GenerateSeed(&cfg.Seed)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := st.Seed(ctx, data); err != nil {
		return err
	}
	rep.Seed, rep.SeedTime = data.Options, time.Since(t0)
	fmt.Fprintf(out, "Seeded %s with %s profiles, %s experts and %s appointments in %v.\n",
		rep.Backend, group(uint64(len(data.Profiles))), group(uint64(len(data.Experts))),
		group(uint64(len(data.Appointments))), rep.SeedTime.Round(time.Millisecond))

	namespace := "demo-" + strings.ReplaceAll(runID, "_", "-")
	clients := connectRedis(ctx, cfg, rep)
	var mx *metrics
	if cfg.MetricsAddr != "" {
		if mx, err = startMetrics(cfg.MetricsAddr); err != nil {
			fmt.Fprintf(out, "Prometheus metrics not served (%v); running without.\n", err)
		} else {
			defer func() { err = errors.Join(err, mx.Close()) }()
			rep.MetricsURL = mx.url
		}
	}
	counted := booking.Count(st)
	insts := make([]*instance, Instances)
	defer func() { err = errors.Join(err, closeInstances(insts, rep)) }()
	for i := range insts { // first, so that closeInstances closes every client
		insts[i] = &instance{name: string(rune('A' + i))}
		if clients != nil {
			insts[i].rdb = clients[i]
		}
	}
	for _, in := range insts {
		co := &booking.CacheOptions{Namespace: namespace, Name: "demo." + in.name, TTL: cfg.TTL, L1TTL: cfg.L1TTL,
			L2Timeout: cfg.L2Timeout, L1MaxCost: cfg.L1MaxCost}
		if mx != nil {
			co.Observer = mx.observer // one Observer for every cache: they differ by name
		}
		if in.rdb != nil {
			if in.bus, err = invalidate.New(in.rdb, nil); err != nil {
				return err
			}
			bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			in.stopBus, in.busDone = cancel, make(chan struct{})
			go func() {
				defer close(in.busDone)
				_ = in.bus.Run(bctx) // returns nil when bctx ends
			}()
			co.L2, co.Invalidator = goredis.Must(in.rdb, nil), in.bus
		}
		if in.caches, err = booking.NewCaches(co); err != nil {
			return err
		}
		in.repo = booking.NewCachedRepository(counted, in.caches)
	}
	rep.L1Bound = int64(len(insts[0].caches.KeyPrefixes())) * cfg.L1MaxCost
	if mx != nil {
		fmt.Fprintf(out, "Prometheus metrics at %s (tiercache_requests_total, tiercache_l1_cost_bytes, ...).\n", mx.url)
	}
	if clients != nil {
		fmt.Fprintf(out, "Redis at %s: %d instances, each with its own client and invalidation bus, sharing L2 namespace %q.\n", rep.Redis, Instances, namespace)
	}
	mode := "reads only"
	if cfg.ReadRatio < 1 {
		mode = fmt.Sprintf("%.0f%% reads, %.1f%% writes", 100*cfg.ReadRatio, 100*(1-cfg.ReadRatio))
	}
	fmt.Fprintf(out, "Running %v: %d workers, %s, Zipf s=%.2f over ids.\n", cfg.Duration, cfg.Workers, mode, cfg.Zipf)

	w := newWorkload(cfg, data, insts)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	// The stats at half time: the targets judge the hit rate on the second
	// half of the run, once the caches are warm.
	var half atomic.Pointer[tier.Stats]
	halfTimer := time.AfterFunc(cfg.Duration/2, func() {
		s := sumStats(w.stats())
		half.Store(&s)
	})
	defer halfTimer.Stop()
	var wg sync.WaitGroup
	hists, whists := make([]*histogram, cfg.Workers), make([]*histogram, cfg.Workers)
	for i := range cfg.Workers {
		hists[i], whists[i] = new(histogram), new(histogram)
		wg.Go(func() { w.worker(ctx, i, deadline, hists[i], whists[i]) })
	}
	done := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() { w.progress(out, cfg, start, counted, done) })
	wg.Wait()
	close(done)
	pwg.Wait()

	rep.Elapsed = time.Since(start)
	var h, wh histogram
	for i := range hists {
		h.merge(hists[i])
		wh.merge(whists[i])
	}
	rep.P50, rep.P99 = h.quantile(0.50), h.quantile(0.99)
	rep.WriteP50, rep.WriteP99 = wh.quantile(0.50), wh.quantile(0.99)
	w.fill(rep)
	for i, in := range insts {
		rep.Instances[i] = in.caches.Stats()
		if in.bus != nil {
			bs := in.bus.Stats()
			rep.BusSent += bs.Sent
			rep.BusReceived += bs.Received
			rep.BusGaps += bs.Gaps
			rep.BusReconnects += bs.Reconnects
		}
	}
	rep.Total = sumStats(rep.Instances[:])
	if halfTimer.Stop() || half.Load() == nil {
		rep.SecondHalf = rep.Total // the run ended (was cancelled) before half time
	} else {
		rep.SecondHalf = subStats(rep.Total, *half.Load())
	}
	rep.DBReads, rep.DBWrites = counted.Reads(), counted.Writes()
	return ctx.Err()
}

// openStore opens the database cfg names, in a place of its own, and
// returns it with a function that closes it and removes what it created.
func openStore(ctx context.Context, cfg Config, runID string, rep *Report) (store, func() error, error) {
	if cfg.DatabaseURL == "" {
		dir, err := os.MkdirTemp("", "tiercache-demo-")
		if err != nil {
			return nil, nil, err
		}
		path := filepath.Join(dir, "demo.db")
		st, err := sqlitestore.Open(ctx, path)
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		rep.Backend = "SQLite " + path
		return st, func() error { return errors.Join(st.Close(), os.RemoveAll(dir)) }, nil
	}
	schema := "tiercache_demo_" + runID
	st, err := pgstore.Open(ctx, cfg.DatabaseURL, &pgstore.Options{Schema: schema})
	if err != nil {
		return nil, nil, err
	}
	rep.Backend = "PostgreSQL (schema " + schema + ")"
	return st, func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, err := st.Pool().Exec(dctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		return errors.Join(err, st.Close())
	}, nil
}

// connectRedis returns one client per instance, or nil (having said why)
// when Redis is not configured or does not answer.
func connectRedis(ctx context.Context, cfg Config, rep *Report) []*redis.Client {
	if cfg.RedisAddr == "" {
		rep.RedisNote = "no Redis configured: running L1-only"
		fmt.Fprintf(cfg.Out, "No Redis configured: running L1-only (%d instances, no shared tier).\n", Instances)
		return nil
	}
	opts, err := redisOptions(cfg.RedisAddr)
	if err == nil {
		// One dial, no retries: an absent Redis is reported at once.
		opts.DialerRetries, opts.MaxRetries = 1, -1
		probe := redis.NewClient(opts)
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err = probe.Ping(pctx).Err()
		cancel()
		probe.Close()
	}
	if err != nil {
		rep.RedisNote = fmt.Sprintf("Redis at %s is not reachable (%v): running L1-only", cfg.RedisAddr, err)
		fmt.Fprintf(cfg.Out, "%s (%d instances, no shared tier, no invalidation bus; start redis-server or set REDIS_ADDR for both).\n", rep.RedisNote, Instances)
		return nil
	}
	rep.Redis = cfg.RedisAddr
	clients := make([]*redis.Client, Instances)
	for i := range clients {
		o, _ := redisOptions(cfg.RedisAddr) // parsed above
		clients[i] = redis.NewClient(o)
	}
	return clients
}

func redisOptions(addr string) (*redis.Options, error) {
	o := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if o, err = redis.ParseURL(addr); err != nil {
			return nil, err
		}
	}
	o.ContextTimeoutEnabled = true // the caches bound every Redis call themselves
	return o, nil
}

// closeInstances closes the caches, stops the buses, removes the run's
// keys from Redis and closes the clients.
func closeInstances(insts []*instance, rep *Report) error {
	var errs []error
	var prefixes []string
	var rdb *redis.Client
	for _, in := range insts {
		if in == nil {
			continue
		}
		if in.caches != nil {
			prefixes = in.caches.KeyPrefixes() // the same namespaces on every instance
			errs = append(errs, in.caches.Close())
		}
		if in.stopBus != nil {
			in.stopBus()
		}
		if in.rdb != nil && rdb == nil {
			rdb = in.rdb
		}
	}
	for _, in := range insts { // the buses stop together
		if in != nil && in.busDone != nil {
			<-in.busDone
		}
	}
	if rdb != nil && prefixes != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := deleteKeys(ctx, rdb, prefixes)
		cancel()
		rep.RedisKeysDeleted = n
		errs = append(errs, err)
	}
	for _, in := range insts {
		if in != nil && in.rdb != nil {
			errs = append(errs, in.rdb.Close())
		}
	}
	return errors.Join(errs...)
}

// deleteKeys removes every key that starts with one of prefixes, with SCAN
// MATCH and UNLINK in batches.
func deleteKeys(ctx context.Context, rdb *redis.Client, prefixes []string) (int, error) {
	n := 0
	for _, p := range prefixes {
		iter := rdb.Scan(ctx, 0, globEscape(p)+"*", 1000).Iterator()
		batch := make([]string, 0, 500)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := rdb.Unlink(ctx, batch...).Err()
			n += len(batch)
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return n, fmt.Errorf("demo: unlink: %w", err)
				}
			}
		}
		if err := errors.Join(iter.Err(), flush()); err != nil {
			return n, fmt.Errorf("demo: delete keys: %w", err)
		}
	}
	return n, nil
}

// globEscape escapes the characters that SCAN MATCH patterns interpret.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func sumStats(ss []tier.Stats) tier.Stats {
	var t tier.Stats
	for _, s := range ss {
		t.L1Hits += s.L1Hits
		t.Misses += s.Misses
		t.L2Hits += s.L2Hits
		t.NegativeHits += s.NegativeHits
		t.StaleServed += s.StaleServed
		t.Refreshes += s.Refreshes
		t.Loads += s.Loads
		t.LoadErrors += s.LoadErrors
		t.Fallbacks += s.Fallbacks
		t.L2Errors += s.L2Errors
		t.DecodeErrors += s.DecodeErrors
		t.Refused += s.Refused
		t.LeaseWaits += s.LeaseWaits
		t.LeaseLost += s.LeaseLost
		t.PendingInvalidations += s.PendingInvalidations
		t.Replayed += s.Replayed
		t.BreakerOpens += s.BreakerOpens
		t.L1Cost += s.L1Cost
		t.L1SetsDropped += s.L1SetsDropped
		t.L1SetsRejected += s.L1SetsRejected
		t.L1Evicted += s.L1Evicted
	}
	return t
}

// subStats returns the read counters of a minus those of b: what happened
// between two snapshots.
func subStats(a, b tier.Stats) tier.Stats {
	return tier.Stats{
		L1Hits:    a.L1Hits - b.L1Hits,
		Misses:    a.Misses - b.Misses,
		L2Hits:    a.L2Hits - b.L2Hits,
		Loads:     a.Loads - b.Loads,
		Fallbacks: a.Fallbacks - b.Fallbacks,
		L2Errors:  a.L2Errors - b.L2Errors,
	}
}

// workload is the mix. Its counters are updated by every worker.
type workload struct {
	cfg   Config
	data  *booking.SeedData
	insts []*instance

	// revs[id] is the latest revision of profile id whose update has
	// returned; locks serialize the updates of one profile.
	revs  []atomic.Int64
	locks [256]sync.Mutex

	bookedMu sync.Mutex
	booked   []int64 // guarded by bookedMu: this run's bookings, not yet cancelled

	reads, notFound, staleChecked, stale               atomic.Uint64
	bookings, slotTaken, cancels, updates, invalidErrs atomic.Uint64
	errs                                               atomic.Uint64
	firstErr                                           atomic.Pointer[error]
}

func newWorkload(cfg Config, data *booking.SeedData, insts []*instance) *workload {
	return &workload{cfg: cfg, data: data, insts: insts, revs: make([]atomic.Int64, len(data.Profiles)+1)}
}

func (w *workload) fail(err error) {
	w.errs.Add(1)
	w.firstErr.CompareAndSwap(nil, &err)
}

func (w *workload) worker(ctx context.Context, i int, deadline time.Time, h, wh *histogram) {
	rng := rand.New(rand.NewPCG(uint64(i)+1, 0x64656d6f))
	o := &w.data.Options
	// Zipf ranks: rank 0 is id 1 (the hottest), today for days, and the
	// newest seeded appointment; 5% of appointment ids are past the seeded
	// ones (some "not found", cached as such; some this run's bookings).
	profiles := rand.NewZipf(rng, w.cfg.Zipf, 1, uint64(o.Profiles-1))
	experts := rand.NewZipf(rng, w.cfg.Zipf, 1, uint64(o.Experts-1))
	days := rand.NewZipf(rng, w.cfg.Zipf, 1, uint64(o.Days-1))
	appts := rand.NewZipf(rng, w.cfg.Zipf, 1, uint64(o.Appointments-1))
	for ctx.Err() == nil && time.Now().Before(deadline) {
		in := w.insts[rng.IntN(len(w.insts))]
		p := pick{
			profile:     int64(profiles.Uint64() + 1),
			expert:      int64(experts.Uint64() + 1),
			day:         o.Start.AddDate(0, 0, int(days.Uint64())),
			appointment: int64(o.Appointments) - int64(appts.Uint64()),
		}
		if rng.IntN(20) == 0 {
			p.appointment = int64(o.Appointments) + 1 + rng.Int64N(int64(o.Appointments/20+1))
		}
		t0 := time.Now()
		if rng.Float64() < w.cfg.ReadRatio {
			w.read(ctx, rng, in.repo, p)
			h.add(time.Since(t0))
		} else {
			w.write(ctx, rng, in.repo, p)
			wh.add(time.Since(t0))
		}
	}
}

// pick is what one operation is about.
type pick struct {
	profile, expert, appointment int64
	day                          time.Time
}

func (w *workload) read(ctx context.Context, rng *rand.Rand, repo *booking.CachedRepository, p pick) {
	o := &w.data.Options
	profile, expert := p.profile, p.expert
	// A read once started runs to its end, also when the run ends meanwhile:
	// then every read counted here is one the caches answered and counted
	// (a cache starts nothing on an ended context), and Reads equals the
	// requests in the report.
	ctx = context.WithoutCancel(ctx)
	w.reads.Add(1)
	var err error
	switch r := rng.IntN(100); {
	case r < 35:
		floor := w.revs[profile].Load()
		var pr booking.Profile
		if pr, err = repo.GetProfile(ctx, profile); err == nil {
			w.staleChecked.Add(1)
			if revision(pr.Bio) < floor {
				w.stale.Add(1)
			}
		}
	case r < 55:
		_, err = repo.GetExpert(ctx, expert)
	case r < 80:
		_, err = repo.ListExpertDay(ctx, expert, p.day)
	case r < 90:
		_, err = repo.GetAppointment(ctx, p.appointment)
	case r < 95:
		_, err = repo.ListUpcoming(ctx, profile, o.Start, 10)
	default:
		_, err = repo.ListExpertsBySpecialty(ctx, booking.Specialties[rng.IntN(len(booking.Specialties))])
	}
	switch {
	case err == nil:
	case errors.Is(err, sql.ErrNoRows): // pgx.ErrNoRows matches it too
		w.notFound.Add(1)
	case ctx.Err() != nil:
	default:
		w.fail(err)
	}
}

func (w *workload) write(ctx context.Context, rng *rand.Rand, repo *booking.CachedRepository, p pick) {
	switch r := rng.IntN(100); {
	case r < 30:
		w.updateProfile(ctx, repo, p.profile)
	case r < 50:
		w.bookedMu.Lock()
		var id int64
		if n := len(w.booked); n > 0 {
			j := rng.IntN(n)
			id = w.booked[j]
			w.booked[j] = w.booked[n-1]
			w.booked = w.booked[:n-1]
		}
		w.bookedMu.Unlock()
		if id != 0 {
			_, err := repo.CancelAppointment(ctx, id)
			w.wrote(ctx, err, &w.cancels)
			return
		}
		fallthrough // nothing of ours to cancel yet: book instead
	default:
		o := &w.data.Options
		slots := booking.Slots(p.day)
		a, err := repo.BookAppointment(ctx, booking.Booking{
			ExpertID: p.expert,
			GuestID:  1 + rng.Int64N(int64(o.Profiles)),
			StartsAt: slots[rng.IntN(len(slots))],
		})
		if errors.Is(err, booking.ErrSlotTaken) {
			w.slotTaken.Add(1)
			return
		}
		if w.wrote(ctx, err, &w.bookings) {
			w.bookedMu.Lock()
			w.booked = append(w.booked, a.ID)
			w.bookedMu.Unlock()
			if w.cfg.OnBooking != nil {
				w.cfg.OnBooking(ctx, a)
			}
		}
	}
}

// wrote counts a write's outcome and reports whether it was made.
func (w *workload) wrote(ctx context.Context, err error, ctr *atomic.Uint64) bool {
	switch {
	case err == nil:
	case errors.Is(err, dbcache.ErrInvalidate): // made, but the caches may not know
		w.invalidErrs.Add(1)
	case ctx.Err() != nil:
		return false
	default:
		w.fail(err)
		return false
	}
	ctr.Add(1)
	return true
}

func (w *workload) updateProfile(ctx context.Context, repo *booking.CachedRepository, id int64) {
	mu := &w.locks[id%int64(len(w.locks))]
	mu.Lock()
	defer mu.Unlock()
	rev := w.revs[id].Load() + 1
	_, err := repo.UpdateProfile(ctx, booking.ProfileUpdate{
		ID:   id,
		Name: w.data.Profiles[id-1].Name,
		Bio:  fmt.Sprintf("Updated by the tiercache demo [rev %d]", rev),
	})
	if w.wrote(ctx, err, &w.updates) {
		w.revs[id].Store(rev)
	}
}

// revision returns the revision the demo wrote into a bio, 0 for a seeded
// one.
func revision(bio string) int64 {
	i := strings.LastIndex(bio, "[rev ")
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSuffix(bio[i+len("[rev "):], "]"), 10, 64)
	return n
}

func (w *workload) progress(out io.Writer, cfg Config, start time.Time, counted *booking.Counted, done <-chan struct{}) {
	t := time.NewTicker(cfg.Progress)
	defer t.Stop()
	end := "\n"
	if cfg.Terminal {
		end = "\r"
	}
	width := 0 // of the longest line so far, to blank what a shorter one leaves
	for {
		select {
		case <-done:
			if cfg.Terminal {
				fmt.Fprint(out, "\n")
			}
			return
		case <-t.C:
		}
		s := sumStats(w.stats())
		el := time.Since(start)
		reads := w.reads.Load()
		line := fmt.Sprintf("  %5.1fs  %s reads (%s/s)  L1 %s  L2 %s  db reads %s  writes %s",
			el.Seconds(), group(reads), group(uint64(float64(reads)/el.Seconds())),
			pct(s.L1Hits, s.L1Hits+s.Misses), pct(s.L2Hits, s.L1Hits+s.Misses),
			group(counted.Reads()), group(counted.Writes()))
		width = max(width, len(line))
		fmt.Fprintf(out, "%-*s%s", width, line, end)
	}
}

// stats returns the stats of each instance's caches.
func (w *workload) stats() []tier.Stats {
	ss := make([]tier.Stats, len(w.insts))
	for i, in := range w.insts {
		ss[i] = in.caches.Stats()
	}
	return ss
}

func (w *workload) fill(rep *Report) {
	rep.Reads = w.reads.Load()
	rep.NotFound = w.notFound.Load()
	rep.StaleChecked, rep.StaleReads = w.staleChecked.Load(), w.stale.Load()
	rep.Bookings, rep.SlotTaken = w.bookings.Load(), w.slotTaken.Load()
	rep.Cancels, rep.Updates = w.cancels.Load(), w.updates.Load()
	rep.InvalidateErrors = w.invalidErrs.Load()
	rep.Errors = w.errs.Load()
	if p := w.firstErr.Load(); p != nil {
		rep.FirstError = *p
	}
}
