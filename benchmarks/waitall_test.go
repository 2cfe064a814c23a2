package benchmarks

import (
	"context"
	"testing"
	"time"

	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
	"github.com/tiercache/tiercache/benchmarks/internal/latency"
)

// BenchmarkDeleteAndWait measures what the acknowledged write costs the
// writer: one op is one tier.Cache.Delete and one tier.Cache.DeleteAndWait
// on instance A, of keys that instances B and C hold in L1, with three
// instances (each its own go-redis client and invalidate.Bus, defaults) on
// one Redis. The two calls alternate, so both see the same machine; each
// call is timed from its start to its return. Metrics: delete-p50-us,
// delete-p99-us, wait-p50-us, wait-p99-us, and the ratios wait÷delete at
// p50 and p99, and the failed calls of each kind per op (not timed; ns/op
// covers both calls and the untimed warm-up of B and C).
// DeleteAndWait is Delete, then an ack request that must come back to A
// and be answered by B and C: about two more Redis round trips plus B's
// and C's time to hear, settle L1 and publish.
func BenchmarkDeleteAndWait(b *testing.B) {
	ns := namespace("waitall-" + itoa(staleSeq.Add(1)))
	a, bb, c := newStaleNode(b, ns), newStaleNode(b, ns), newStaleNode(b, ns)
	ctx := context.Background()
	var del, wait latency.Recorder
	delShard, waitShard := del.Shard(), wait.Shard()
	prefix := "w" + itoa(staleSeq.Add(1)) + ":"
	var id int64
	errs := map[bool]int{}
	op := func(record bool) {
		for _, waited := range []bool{false, true} {
			id++
			key := prefix + fixture.Key(id)
			for _, n := range []*staleNode{bb, c} {
				var err error
				for range 10 { // a loaded machine can time one out
					if err = n.c.Set(ctx, key, fixture.NewProfile(id), keyTTL); err == nil {
						break
					}
				}
				if err != nil {
					b.Fatalf("warming %s: %v", key, err)
				}
			}
			start := time.Now()
			var err error
			if waited {
				err = a.c.DeleteAndWait(ctx, key)
			} else {
				err = a.c.Delete(ctx, key)
			}
			d := time.Since(start)
			switch {
			case err != nil:
				// Counted, not timed: an L2 timeout on a loaded machine, or
				// (for the wait) an instance that did not answer in time.
				errs[waited]++
				b.Logf("waited %v: %v", waited, err)
			case !record:
			case waited:
				waitShard.Add(d)
			default:
				delShard.Add(d)
			}
		}
	}
	// The first DeleteAndWait of a bus listens for a heartbeat period
	// before it knows who is live: not part of the figures.
	for range 3 {
		op(false)
	}
	for b.Loop() {
		op(true)
	}
	b.StopTimer()
	b.ReportMetric(float64(errs[false])/float64(b.N), "delete-errors/op")
	b.ReportMetric(float64(errs[true])/float64(b.N), "wait-errors/op")
	ds, ws := del.Summary(), wait.Summary()
	b.ReportMetric(us(ds.P50), "delete-p50-us")
	b.ReportMetric(us(ds.P99), "delete-p99-us")
	b.ReportMetric(us(ws.P50), "wait-p50-us")
	b.ReportMetric(us(ws.P99), "wait-p99-us")
	b.ReportMetric(float64(ws.P50)/float64(ds.P50), "p50-wait/delete")
	b.ReportMetric(float64(ws.P99)/float64(ds.P99), "p99-wait/delete")
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
