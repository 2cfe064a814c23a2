package benchmarks

import (
	"context"
	"flag"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tiercache/tiercache/benchmarks/internal/contender"
	"github.com/tiercache/tiercache/benchmarks/internal/zipf"
)

// zipfWorkersPerCPU is how many goroutines per GOMAXPROCS issue the reads
// of a pass: enough to keep the CPUs busy while others wait on Redis.
const zipfWorkersPerCPU = 4

// zipfWarmPasses is how many untimed passes precede the warm phase: enough
// for admission policies that learn frequencies (ristretto's TinyLFU,
// go-redis/cache's) to reach their steady hit ratio.
const zipfWarmPasses = 10

// zipfPass returns how many reads one pass makes: one per key, or a tenth
// of that in quick (-benchtime=1x) runs.
func zipfPass() int {
	if quick() {
		return zipf.Keys / 10
	}
	return zipf.Keys
}

// zipfSizing is how the local tiers of BenchmarkZipf and
// BenchmarkL1Footprint are sized: -zipf.sizing=entries (the default, the
// same number of entries for every library) or -zipf.sizing=bytes (the
// sizing used until 2026-12-06, kept to compare the two in one run); see
// contender.Sizing.
var zipfSizing = flag.String("zipf.sizing", "entries", "local tier sizing of the Zipf workload: entries or bytes")

// zipfTiercacheL1 (-zipf.tiercache-l1=N) gives tiercache's L1 room for N
// entries (count-bounded, whatever -zipf.sizing) instead of 10k, the
// peers keeping theirs: a diagnosis, not a fair run. About 32k entries
// gives the ~91% warm L1 hits tiercache had before every path charged an
// entry its real size (an entry refilled from L2 cost ~157 B, not ~713),
// so that a run on one host can tell that change from the host's.
var zipfTiercacheL1 = flag.Int("zipf.tiercache-l1", 0, "entries of tiercache's L1 in the Zipf workload (0: as the others)")

var (
	zipfOnce  sync.Once
	zipfTrace []int32
	zipfNames []string
)

func zipfInit() {
	zipfOnce.Do(func() {
		zipfTrace = zipf.Trace(4*zipf.Keys, zipf.Keys, zipf.S, 1)
		zipfNames = zipf.KeyNames(zipf.Keys)
	})
}

// zipfConfig returns the configuration of Zipf contender name under
// namespace ns, with an L1 of l1 entries (0: none) sized as -zipf.sizing
// (and -zipf.tiercache-l1) say.
func zipfConfig(b *testing.B, name, ns string, l1 int) contender.Config {
	b.Helper()
	sz, err := contender.ParseSizing(*zipfSizing)
	if err != nil {
		b.Fatal(err)
	}
	if name == contender.Tiercache && l1 > 0 && *zipfTiercacheL1 > 0 {
		l1, sz = *zipfTiercacheL1, contender.SizeEntries
	}
	return contender.Config{Namespace: ns, L1Entries: l1, Sizing: sz, Origin: contender.MemoryOrigin(0)}
}

// BenchmarkZipf reads Zipf-distributed keys (100k keys, exponent 1.01)
// through each library, with an in-memory origin (so the figures are the
// caches' own costs) and a local tier sized to hold 10% of the keys, 10k
// entries, in every library (-zipf.sizing=entries, the default):
// go-redis/cache's TinyLFU holds 10k entries; tiercache's L1 charges an
// entry 1 and is bounded by 10k; rueidis's connections' caches get
// 10k × the ~1 kB rueidis charges a profile entry between them. The
// bytes each then uses differ (BenchmarkL1Footprint). -zipf.sizing=bytes
// gives the sizing used until 2026-12-06 (tiercache's L1 and each rueidis
// connection 10k × 720 B), which held 9.8k entries in tiercache, 7.0k in
// rueidis at -cpu=1 and 14k at -cpu=2 (one cache per connection, two
// connections).
//
// One operation is one pass of 100k reads by 4×GOMAXPROCS goroutines; the
// metrics are ns/get (wall time per read) and l1-hit-% (reads answered in
// process). phase=cold starts each pass from empty tiers (L1 and Redis);
// phase=warm runs after ten untimed passes (1M reads) on the same tiers. Run it
// with -cpu=1,2.
func BenchmarkZipf(b *testing.B) {
	pass := zipfPass()
	zipfInit()
	for _, phase := range []string{"cold", "warm"} {
		for _, name := range contender.Names {
			b.Run("phase="+phase+"/impl="+name, func(b *testing.B) {
				benchZipf(b, name, phase == "warm", pass)
			})
		}
	}
}

var zipfRun atomic.Int64

func benchZipf(b *testing.B, name string, warm bool, pass int) {
	pinProcs(b)
	workers := zipfWorkersPerCPU * runtime.GOMAXPROCS(0)
	rdb := newRedis(b)
	newInst := func() (contender.Contender, string) {
		ns := namespace("zipf-" + name + "-" + itoa(zipfRun.Add(1)))
		return newContender(b, name, zipfConfig(b, name, ns, zipfL1Entries)), ns
	}
	run := func(c contender.Contender, from int) { zipfRead(b, c, workers, from, pass) }
	var hits uint64
	var c contender.Contender
	var ns string
	if warm {
		c, ns = newInst()
		for p := range zipfWarmPasses {
			run(c, p*pass)
		}
	}
	var cpu, rcpu float64 // the passes' process CPU (ns) and Redis CPU (µs)
	cpuOK := true
	timed := func(c contender.Contender, from int) {
		c0, ok0 := processCPU()
		r0, _ := redisCPU(b, rdb, nil)
		run(c, from)
		c1, ok1 := processCPU()
		r1, _ := redisCPU(b, rdb, nil)
		cpu, rcpu, cpuOK = cpu+float64(c1-c0), rcpu+r1-r0, cpuOK && ok0 && ok1
	}
	b.ResetTimer()
	for i := range b.N {
		from := zipfWarmPasses * pass
		if !warm {
			b.StopTimer()
			if c != nil {
				_ = c.Close()
				dropNamespace(b, rdb, ns)
			}
			c, ns = newInst()
			from = 0
			b.StartTimer()
		}
		h0 := c.LocalHits()
		timed(c, from+i*pass)
		hits += c.LocalHits() - h0
	}
	b.StopTimer()
	reads := float64(b.N) * float64(pass)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/reads, "ns/get")
	b.ReportMetric(100*float64(hits)/reads, "l1-hit-%")
	// What the reads cost the two CPUs they share, whoever waited: on a
	// host shared with other work these move far less than ns/get does.
	// Redis's counts every client of the server (run against a private one).
	if cpuOK {
		b.ReportMetric(cpu/reads, "cpu-ns/get")
	}
	b.ReportMetric(1000*rcpu/reads, "redis-cpu-ns/get")
	dropNamespace(b, rdb, ns)
}

// zipfL1Entries is the size of the Zipf workload's local tiers: 10% of the
// keys.
const zipfL1Entries = int(zipf.L1Share * zipf.Keys)

// zipfRead reads the pass of n keys of the trace that starts at from
// through c, from workers goroutines.
func zipfRead(b *testing.B, c contender.Contender, workers, from, n int) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				k := zipfTrace[(from+i)%len(zipfTrace)]
				if _, err := c.Get(ctx, zipfNames[k], int64(k)+1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkL1Footprint measures what each library's local tier holds at
// the end of BenchmarkZipf's warm-up (ten passes over the trace, sized by
// -zipf.sizing): entries (keys the local tier answers from, counted with
// contender.Holder) and live heap (after a GC, the growth since before the
// contender was made, minus that of the same library without a local tier
// after one pass), reported as l1-entries, l1-MiB and l1-B/entry. Its
// ns/op is not a figure. Run it with -cpu=1,2 (rueidis has one cache per
// connection, and more connections with more CPUs).
func BenchmarkL1Footprint(b *testing.B) {
	pass := zipfPass()
	zipfInit()
	for _, name := range contender.Names {
		b.Run("impl="+name, func(b *testing.B) {
			pinProcs(b)
			rdb := newRedis(b)
			workers := zipfWorkersPerCPU * runtime.GOMAXPROCS(0)
			var entries int
			var with, without int64
			for range b.N {
				// heapGrowth returns the live heap the contender made with l1
				// entries holds after passes passes, and how many keys its
				// local tier holds.
				heapGrowth := func(l1, passes int) (int64, int) {
					ns := namespace("footprint-" + name + "-" + itoa(zipfRun.Add(1)))
					before := liveHeap()
					c := newContender(b, name, zipfConfig(b, name, ns, l1))
					for p := range passes {
						zipfRead(b, c, workers, p*pass, pass)
					}
					grown := liveHeap() - before
					n := contender.Held(c, zipfNames)
					runtime.KeepAlive(c)
					_ = c.Close()
					dropNamespace(b, rdb, ns)
					return grown, n
				}
				with, entries = heapGrowth(zipfL1Entries, zipfWarmPasses)
				without, _ = heapGrowth(0, 1)
			}
			local := with - without
			b.ReportMetric(float64(entries), "l1-entries")
			b.ReportMetric(float64(local)/(1<<20), "l1-MiB")
			b.ReportMetric(float64(local)/float64(max(entries, 1)), "l1-B/entry")
		})
	}
}

// liveHeap returns the bytes of live heap objects, after two collections.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
