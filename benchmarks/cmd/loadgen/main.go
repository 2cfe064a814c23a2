// Command loadgen drives tiercache and its peers with Zipf-distributed
// reads for longer than a benchmark does, printing a progress line while it
// runs and, at the end, a Markdown summary table (throughput, latency
// percentiles, L1 hit ratio, origin loads) and optionally a PNG plot.
//
//	go run ./cmd/loadgen -duration 20s -png results/loadgen.png > results/loadgen.md
//
// It starts its own redis-server (or uses REDIS_ADDR). Each library gets
// two phases on fresh tiers: cold (from empty L1 and Redis) and warm (the
// same tiers after the cold phase). Reads go to an in-memory origin unless
// -origin-delay adds a fixed delay per load.
//
// Every library's local tier holds the same number of entries, -l1 of the
// keys (-sizing entries, the default): go-redis/cache's TinyLFU counts
// entries; tiercache's L1 charges an entry 1; rueidis's connections'
// caches get between them that many times the bytes rueidis charges a
// profile entry (see contender.SizeEntries). -sizing bytes is the sizing
// used until 2026-12-06 (tiercache's L1 and each rueidis connection
// L1 entries × 720 B), under which rueidis, with two connections at
// GOMAXPROCS 2, held 1.4× the entries of the others. The summary's "L1
// entries" column counts the keys each local tier holds at the end of
// each phase.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/benchmarks/internal/contender"
	"github.com/tiercache/tiercache/benchmarks/internal/latency"
	"github.com/tiercache/tiercache/benchmarks/internal/redisproc"
	"github.com/tiercache/tiercache/benchmarks/internal/zipf"
)

// row is the outcome of one (library, phase).
type row struct {
	impl, phase string
	reads       int64
	errors      int64
	elapsed     time.Duration
	lat         latency.Summary
	hits        uint64
	loads       int64
	held        int
}

func (r row) rate() float64 { return float64(r.reads) / r.elapsed.Seconds() }

func (r row) hitPct() float64 {
	if r.reads == 0 {
		return 0
	}
	return 100 * float64(r.hits) / float64(r.reads)
}

func main() {
	dur := flag.Duration("duration", 20*time.Second, "how long each phase of each library runs")
	workers := flag.Int("workers", 16, "goroutines issuing reads")
	impls := flag.String("impls", strings.Join(contender.Names, ","), "libraries to drive, comma-separated")
	keys := flag.Int("keys", zipf.Keys, "distinct keys")
	l1 := flag.Float64("l1", zipf.L1Share, "L1 size as a share of the keys")
	delay := flag.Duration("origin-delay", 0, "delay of each origin load")
	png := flag.String("png", "", "write a PNG plot of the results to this file")
	sizing := flag.String("sizing", "entries", "how each local tier is sized: entries (the same count for all) or bytes (until 2026-12-06)")
	flag.Parse()
	sz, err := contender.ParseSizing(*sizing)
	if err == nil {
		err = run(os.Stdout, os.Stderr, *dur, *workers, strings.Split(*impls, ","), *keys, *l1, sz, *delay, *png)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(out, progress io.Writer, dur time.Duration, workers int, impls []string, keys int, l1 float64, sz contender.Sizing,
	delay time.Duration, png string) error {
	srv, err := redisproc.Start()
	if err != nil {
		return err
	}
	defer srv.Close()
	trace := zipf.Trace(1<<22, keys, zipf.S, 7)
	names := zipf.KeyNames(keys)
	var rows []row
	for _, impl := range impls {
		origin := contender.NewCountingOrigin(contender.MemoryOrigin(delay))
		c, err := contender.New(impl, contender.Config{
			RedisAddr: srv.Addr(),
			Namespace: fmt.Sprintf("loadgen-%d-%s", time.Now().UnixNano(), impl),
			L1Entries: int(l1 * float64(keys)),
			Sizing:    sz,
			TTL:       10 * time.Minute,
			Origin:    origin.Load,
		})
		if err != nil {
			return err
		}
		var pos atomic.Int64
		for _, phase := range []string{"cold", "warm"} {
			r := drive(progress, c, origin, impl, phase, dur, workers, trace, names, &pos)
			r.held = contender.Held(c, names)
			rows = append(rows, r)
		}
		if err := c.Close(); err != nil {
			return err
		}
	}
	summary(out, rows, dur, workers, keys, l1, sz, delay)
	if png != "" {
		return writePlot(png, rows)
	}
	return nil
}

// drive reads for dur from workers goroutines and prints a progress line
// twice a second.
func drive(progress io.Writer, c contender.Contender, origin *contender.CountingOrigin, impl, phase string,
	dur time.Duration, workers int, trace []int32, names []string, pos *atomic.Int64) row {
	ctx := context.Background()
	var rec latency.Recorder
	var reads, errs atomic.Int64
	h0, l0 := c.LocalHits(), origin.Calls()
	start := time.Now()
	stop := start.Add(dur)
	var wg sync.WaitGroup
	for range workers {
		sh := rec.Shard()
		wg.Go(func() {
			for time.Now().Before(stop) {
				k := trace[int(pos.Add(1)-1)%len(trace)]
				t0 := time.Now()
				_, err := c.Get(ctx, names[k], int64(k)+1)
				sh.Add(time.Since(t0))
				reads.Add(1)
				if err != nil {
					errs.Add(1)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			el := time.Since(start)
			fmt.Fprintf(progress, "\r%-15s %-5s %s %8d reads %9.0f/s  done\n", impl, phase, bar(1), reads.Load(), float64(reads.Load())/el.Seconds())
			return row{impl: impl, phase: phase, reads: reads.Load(), errors: errs.Load(), elapsed: el,
				lat: rec.Summary(), hits: c.LocalHits() - h0, loads: origin.Calls() - l0}
		case <-tick.C:
			el := time.Since(start)
			fmt.Fprintf(progress, "\r%-15s %-5s %s %8d reads %9.0f/s", impl, phase, bar(el.Seconds()/dur.Seconds()), reads.Load(), float64(reads.Load())/el.Seconds())
		}
	}
}

// bar draws a 30-character progress bar for a fraction in [0, 1].
func bar(f float64) string {
	n := int(min(max(f, 0), 1) * 30)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 30-n) + "]"
}

func summary(w io.Writer, rows []row, dur time.Duration, workers, keys int, l1 float64, sz contender.Sizing, delay time.Duration) {
	fmt.Fprintf(w, "loadgen: %v per phase, %d workers, GOMAXPROCS %d, %d keys (Zipf s=%.2f), L1 = %.0f%% of keys (sizing %v), origin delay %v\n\n",
		dur, workers, runtime.GOMAXPROCS(0), keys, zipf.S, 100*l1, sz, delay)
	fmt.Fprintln(w, "| impl | phase | reads/s | p50 | p90 | p99 | max | L1 hit % | L1 entries | origin loads | errors |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %.0f | %v | %v | %v | %v | %.1f | %d | %d | %d |\n", r.impl, r.phase, r.rate(),
			round(r.lat.P50), round(r.lat.P90), round(r.lat.P99), round(r.lat.Max), r.hitPct(), r.held, r.loads, r.errors)
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	}
	return d
}
