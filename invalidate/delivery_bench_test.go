package invalidate_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkDelivery measures how long an invalidation takes to reach
// another instance, against its floor measured in the same run: a raw
// go-redis PUBLISH and the subscriber's receive. It reports p50 and p99 in
// microseconds (the ns/op of the sub-benchmarks is the same figure's mean).
//
//	go test -run '^$' -bench BenchmarkDelivery -benchtime 2000x ./invalidate
func BenchmarkDelivery(b *testing.B) {
	srv := redistest.Start(b)
	report := func(b *testing.B, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("impl=raw-publish-receive", func(b *testing.B) {
		pub, sub := srv.Client(b), srv.Client(b)
		ps := sub.Subscribe(context.Background(), "bench")
		defer ps.Close()
		if _, err := ps.Receive(context.Background()); err != nil { // the confirmation
			b.Fatal(err)
		}
		ch := ps.Channel()
		d := make([]time.Duration, 0, b.N)
		for i := 0; b.Loop(); i++ {
			t0 := time.Now()
			if err := pub.Publish(context.Background(), "bench", fmt.Sprint(i)).Err(); err != nil {
				b.Fatal(err)
			}
			<-ch
			d = append(d, time.Since(t0))
		}
		report(b, d)
	})
	b.Run("impl=tiercache-delete", func(b *testing.B) {
		ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		a, c := newNode(b, srv, ns, nodeOpts{}), newNode(b, srv, ns, nodeOpts{})
		d := make([]time.Duration, 0, b.N)
		for i := 0; b.Loop(); i++ {
			before := c.bus.Stats().KeysDropped
			t0 := time.Now()
			if err := a.cache.Delete(context.Background(), fmt.Sprint("k", i)); err != nil {
				b.Fatal(err)
			}
			for c.bus.Stats().KeysDropped == before {
				yieldCPU()
			}
			d = append(d, time.Since(t0))
		}
		report(b, d)
	})
}
