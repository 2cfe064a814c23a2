package benchmarks

import (
	"context"
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

var (
	zipfOnce  sync.Once
	zipfTrace []int32
	zipfNames []string
)

// BenchmarkZipf reads Zipf-distributed keys (100k keys, exponent 1.01)
// through each library, with an L1 sized to 10% of the keys and an
// in-memory origin (so the figures are the caches' own costs). One
// operation is one pass of 100k reads by 4×GOMAXPROCS goroutines; the
// metrics are ns/get (wall time per read) and l1-hit-% (reads answered in
// process). phase=cold starts each pass from empty tiers (L1 and Redis);
// phase=warm runs after ten untimed passes (1M reads) on the same tiers. Run it
// with -cpu=1,2.
func BenchmarkZipf(b *testing.B) {
	pass := zipfPass()
	zipfOnce.Do(func() {
		zipfTrace = zipf.Trace(4*zipf.Keys, zipf.Keys, zipf.S, 1)
		zipfNames = zipf.KeyNames(zipf.Keys)
	})
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
	ctx := context.Background()
	workers := zipfWorkersPerCPU * runtime.GOMAXPROCS(0)
	rdb := newRedis(b)
	newInst := func() (contender.Contender, string) {
		ns := namespace("zipf-" + name + "-" + itoa(zipfRun.Add(1)))
		return newContender(b, name, contender.Config{
			Namespace: ns,
			L1Entries: int(zipf.L1Share * zipf.Keys),
			Origin:    contender.MemoryOrigin(0),
		}), ns
	}
	run := func(c contender.Contender, from int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= pass {
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
	var hits uint64
	var c contender.Contender
	var ns string
	if warm {
		c, ns = newInst()
		for p := range zipfWarmPasses {
			run(c, p*pass)
		}
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
		run(c, from+i*pass)
		hits += c.LocalHits() - h0
	}
	b.StopTimer()
	reads := float64(b.N) * float64(pass)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/reads, "ns/get")
	b.ReportMetric(100*float64(hits)/reads, "l1-hit-%")
	dropNamespace(b, rdb, ns)
}
