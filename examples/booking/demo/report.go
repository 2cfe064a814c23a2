package demo

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/tier"
)

// Report is what a [Run] did and measured.
type Report struct {
	Backend   string // the database, as printed
	Redis     string // Redis's address; empty when L1-only
	RedisNote string // why the run is L1-only, if it is
	Workers   int
	Elapsed   time.Duration // how long the mix ran
	Seed      booking.SeedOptions
	SeedTime  time.Duration

	// Reads is the number of reads issued through the caches: the
	// requests, each answered by L1 or a miss, and what the database would
	// have served without a cache. NotFound of them found no row.
	Reads, NotFound uint64
	// Writes made (committed): bookings, cancellations, profile updates;
	// SlotTaken counts bookings refused with booking.ErrSlotTaken.
	Bookings, Cancels, Updates, SlotTaken uint64
	// InvalidateErrors counts writes that were made but whose cache
	// invalidation failed (dbcache.ErrInvalidate).
	InvalidateErrors uint64
	// Errors counts unexpected errors; FirstError is the first of them.
	Errors     uint64
	FirstError error

	// StaleReads counts profile reads that returned a revision older than
	// one whose update had returned before the read began, out of
	// StaleChecked profile reads that returned a profile.
	StaleReads, StaleChecked uint64

	// Instances are the summed stats of each instance's caches; Total sums
	// them. SecondHalf has the read counters (L1Hits, Misses, L2Hits,
	// Loads, Fallbacks, L2Errors) of the second half of the run, once the
	// caches are warm (the whole run's if it was cut short).
	Instances  [Instances]tier.Stats
	Total      tier.Stats
	SecondHalf tier.Stats

	// DBReads and DBWrites are the queries that reached the database.
	DBReads, DBWrites uint64

	// P50 and P99 are quantiles of the read latency, WriteP50 and WriteP99
	// of the write latency (commit and invalidation), within about 6%.
	P50, P99, WriteP50, WriteP99 time.Duration

	// BusSent and BusReceived count the invalidation messages the
	// instances published and received over the pub/sub bus.
	BusSent, BusReceived uint64
	// BusGaps and BusReconnects count the sequence gaps the buses saw and
	// the subscriptions they replaced; each made an instance drop its L1.
	BusGaps, BusReconnects uint64

	// RedisKeysDeleted is how many keys the run removed from Redis at the
	// end.
	RedisKeysDeleted int

	// L1Bound is the bound of one instance's L1 (Config.L1MaxCost for each
	// of its caches), in bytes.
	L1Bound int64
	// MetricsURL is where the run served its Prometheus metrics; empty if
	// it did not.
	MetricsURL string
}

// Target is one of the booking application's targets for its cache, beside
// what a run measured.
type Target struct {
	Name     string // what is measured
	Target   string // the target, as printed ("> 90%")
	Measured string // what the run measured, as printed
	Met      bool
	Note     string // how it was measured, or why it does not apply
}

// The booking application's targets for its cache.
const (
	TargetHitRate   = 0.90                  // cache hit rate (L1 + L2) above 90% of requests
	TargetFallbacks = 0.05                  // fallbacks below 5% of requests
	TargetL2Errors  = 0.001                 // Redis errors below 0.1% of requests
	TargetP99       = 10 * time.Millisecond // p99 of a read through the cache below 10 ms
)

// Targets returns the booking application's targets beside what r
// measured: the cache hit rate (L1 + L2) of the second half of the run,
// fallbacks and Redis errors (each out of the requests), the p99 of a read through the cache, and the
// largest instance's L1 against its bound.
func (r *Report) Targets() []Target {
	req := r.Requests()
	ratio := func(n, of uint64) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	h := r.SecondHalf
	hreq := h.L1Hits + h.Misses
	hit := ratio(h.L1Hits+h.L2Hits, hreq)
	fb := ratio(r.Total.Fallbacks, req)
	l2e := ratio(r.Total.L2Errors, req)
	var l1 int64
	for _, s := range r.Instances {
		l1 = max(l1, s.L1Cost)
	}
	redisNote := "of requests"
	if r.Redis == "" {
		redisNote = "no Redis: L1-only"
	}
	return []Target{
		{Name: "cache hit rate (L1 + L2)", Target: "> 90%", Measured: pct(h.L1Hits+h.L2Hits, hreq),
			Met:  hreq > 0 && hit > TargetHitRate,
			Note: "of the requests of the run's second half, caches warm; whole run from cold: " + pct(r.Total.L1Hits+r.Total.L2Hits, req)},
		{Name: "fallbacks", Target: "< 5%", Measured: pct(r.Total.Fallbacks, req),
			Met: req > 0 && fb < TargetFallbacks, Note: "of requests: reads that skipped or lost Redis"},
		{Name: "Redis errors", Target: "< 0.1%", Measured: pct2(r.Total.L2Errors, req),
			Met: req > 0 && l2e < TargetL2Errors, Note: redisNote},
		{Name: "cache-operation p99", Target: "< 10ms", Measured: short(r.P99),
			Met: r.P99 > 0 && r.P99 < TargetP99, Note: "reads through the cache, loads included"},
		{Name: "L1 memory", Target: "<= " + mib(r.L1Bound), Measured: mib(l1),
			Met: r.L1Bound > 0 && l1 <= r.L1Bound, Note: "largest instance; the bound is its caches' L1MaxCost"},
	}
}

// Requests returns L1 hits + misses summed over the instances: the reads
// the caches answered, which equals Reads.
func (r *Report) Requests() uint64 { return r.Total.L1Hits + r.Total.Misses }

// WriteTable writes the final table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	req := r.Requests()
	row := func(label string, cols ...string) {
		fmt.Fprint(tw, label)
		for _, c := range cols {
			fmt.Fprint(tw, "\t", c)
		}
		fmt.Fprint(tw, "\t\n")
	}
	head := []string{}
	for i := range r.Instances {
		head = append(head, "instance "+string(rune('A'+i)))
	}
	head = append(head, "total")
	row("", head...)
	per := func(f func(s tier.Stats) string) []string {
		var out []string
		for _, s := range r.Instances {
			out = append(out, f(s))
		}
		return append(out, f(r.Total))
	}
	row("requests (L1 hits + misses)", per(func(s tier.Stats) string { return group(s.L1Hits + s.Misses) })...)
	row("L1 hit rate", per(func(s tier.Stats) string { return pct(s.L1Hits, s.L1Hits+s.Misses) })...)
	row("L2 hit rate", per(func(s tier.Stats) string { return pct(s.L2Hits, s.L1Hits+s.Misses) })...)
	row("loads from the database", per(func(s tier.Stats) string { return group(s.Loads) })...)
	row("fallbacks (L2 skipped or failed)", per(func(s tier.Stats) string { return group(s.Fallbacks) })...)
	row("cached \"not found\" answers", per(func(s tier.Stats) string { return group(s.NegativeHits) })...)
	row("waits for another instance's load", per(func(s tier.Stats) string { return group(s.LeaseWaits) })...)
	row("stale reads served (fail-safe)", per(func(s tier.Stats) string { return group(s.StaleServed) })...)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, value, note string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", label, value, note) }
	line("reads issued", group(r.Reads), fmt.Sprintf("(= requests: %v; %s found no row)", r.Reads == req, group(r.NotFound)))
	saved := ""
	if r.Reads > 0 {
		saved = fmt.Sprintf("(without the cache: %s, one per read; %s fewer)", group(r.Reads), pct(r.Reads-min(r.DBReads, r.Reads), r.Reads))
	}
	line("database reads made", group(r.DBReads), saved)
	line("database writes made", group(r.DBWrites), fmt.Sprintf("(%s bookings, %s slot taken, %s cancellations, %s profile updates)",
		group(r.Bookings), group(r.SlotTaken), group(r.Cancels), group(r.Updates)))
	if r.Redis != "" {
		line("invalidation messages", group(r.BusSent)+" sent / "+group(r.BusReceived)+" received",
			fmt.Sprintf("(over Redis pub/sub; %s sequence gaps, %s resubscriptions)", group(r.BusGaps), group(r.BusReconnects)))
	}
	staleNote := fmt.Sprintf("(of %s checked: older than an update that had returned before the read began)", group(r.StaleChecked))
	if r.Redis == "" {
		staleNote = fmt.Sprintf("(of %s checked; without Redis there is no bus: an instance keeps its L1 copy of a profile the other updated until its L1 TTL)", group(r.StaleChecked))
	}
	line("stale profile reads observed", group(r.StaleReads), staleNote)
	line("read latency p50 / p99", short(r.P50)+" / "+short(r.P99), "")
	if r.DBWrites > 0 {
		line("write latency p50 / p99", short(r.WriteP50)+" / "+short(r.WriteP99), "(commit, then invalidation)")
	}
	if r.InvalidateErrors > 0 {
		line("invalidation errors", group(r.InvalidateErrors), "(writes made; the caches may not have heard of them)")
	}
	if r.Errors > 0 {
		line("unexpected errors", group(r.Errors), fmt.Sprintf("(first: %v)", r.FirstError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	where := "L1 only (no Redis)"
	if r.Redis != "" {
		where = fmt.Sprintf("L1 + Redis %s (%d keys removed at the end)", r.Redis, r.RedisKeysDeleted)
	}
	fmt.Fprintf(w, "\ntiers: %s\ndatabase: %s, seeded in %v\n", where, r.Backend, short(r.SeedTime))
	if r.MetricsURL != "" {
		fmt.Fprintf(w, "metrics: %s (served while the run lasted)\n", r.MetricsURL)
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "booking app's targets\ttarget\tmeasured\tmet\t")
	for _, t := range r.Targets() {
		met := "yes"
		if !t.Met {
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t(%s)\n", t.Name, t.Target, t.Measured, met, t.Note)
	}
	return tw.Flush()
}

// short rounds d to three significant digits.
func short(d time.Duration) string {
	p := time.Duration(1)
	for x := d; x >= 1000; x /= 10 {
		p *= 10
	}
	return d.Round(p).String()
}

// group formats n with thousands separators.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// pct2 formats part/whole as a percentage with two decimals.
func pct2(part, whole uint64) string {
	if whole == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 2, 64) + "%"
}

// mib formats n bytes in MiB.
func mib(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// pct formats part/whole as a percentage.
func pct(part, whole uint64) string {
	if whole == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
}
