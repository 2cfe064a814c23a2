package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/benchmarks/internal/latency"
	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/notify"
	"github.com/tiercache/tiercache/tier"
)

// notifyUsers is how many users (streams) the notify benchmarks spread
// their notifications over.
const notifyUsers = 100

// notifyMaxItems is the consume benchmarks' digest size: MaxDelay is an
// hour, so a digest goes out when it holds notifyMaxItems notifications.
const notifyMaxItems = 50

// notifySeq numbers the notifications across runs, so dedup keys are
// always new.
var notifySeq atomic.Int64

// notifyPayload is a notification's payload: a template id and a booking
// id, as a confirmation carries.
var notifyPayload = []byte(`{"t":"booking_confirmed","booking":123456}`)

func notifyUser(i int64) string { return "user-" + strconv.FormatInt(i%notifyUsers, 10) }

// BenchmarkNotifyEnqueue measures enqueueing one notification, serial and
// parallel, against its floor:
//
//   - impl=xadd: one XADD of the same fields to the user's stream (the
//     floor: what any Streams queue pays).
//   - impl=notify: notify.Queue.Enqueue: the enqueue script (dedup marker,
//     XADD, consumer group on first use) and the ZADD of the user's index
//     shard, two round trips.
func BenchmarkNotifyEnqueue(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		for _, impl := range []string{"xadd", "notify"} {
			b.Run("mode="+mode+"/impl="+impl, func(b *testing.B) { benchNotifyEnqueue(b, mode, impl) })
		}
	}
}

func benchNotifyEnqueue(b *testing.B, mode, impl string) {
	rdb := newRedis(b)
	ns := namespace("notify-enq-" + mode + "-" + impl)
	b.Cleanup(func() { dropNamespace(b, rdb, ns) })
	enqueue := notifyEnqueuer(b, rdb, ns, impl)
	b.ReportAllocs()
	b.ResetTimer()
	if mode == "serial" {
		for b.Loop() {
			if err := enqueue(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := enqueue(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// notifyEnqueuer returns a function that enqueues one notification with
// impl (xadd: the floor; notify: Queue.Enqueue) in namespace ns.
func notifyEnqueuer(b *testing.B, rdb *redis.Client, ns, impl string) func() error {
	ctx := context.Background()
	if impl == "xadd" {
		return func() error {
			i := notifySeq.Add(1)
			u := notifyUser(i)
			return rdb.XAdd(ctx, &redis.XAddArgs{Stream: ns + ":{" + u + "}:s", Values: []any{
				"u", u, "c", "email", "k", strconv.FormatInt(i, 10), "p", notifyPayload}}).Err()
		}
	}
	q, err := notify.New(&notify.Options{Client: rdb, Namespace: ns, DedupTTL: keyTTL, MaxDelay: time.Hour, MaxItems: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = q.Close(context.Background()) })
	return func() error {
		i := notifySeq.Add(1)
		_, err := q.Enqueue(ctx, notify.Notification{User: notifyUser(i), Channel: notify.Email,
			DedupKey: strconv.FormatInt(i, 10), Payload: notifyPayload})
		return err
	}
}

// BenchmarkNotifyConsume measures consuming notifications: each op is one
// pass that empties notifyUsers streams holding
// notifyUsers*notifyMaxItems*4 notifications in all (prefilled with the
// timer stopped); ns/notification is the figure to compare.
//
//   - impl=xreadgroup: per stream, XREADGROUP COUNT 1000 then one XACK of
//     the ids read, until the streams are empty (the floor).
//   - impl=notify: notify.Consumer.RunOnce until every notification was
//     handed to a Sender that only counts: the index shards, the user's
//     lock, XAUTOCLAIM and XREADGROUP, one digest per 50 notifications,
//     XACK+XDEL per digest, the index update and unlock.
func BenchmarkNotifyConsume(b *testing.B) {
	for _, impl := range []string{"xreadgroup", "notify"} {
		b.Run("impl="+impl, func(b *testing.B) { benchNotifyConsume(b, impl) })
	}
}

func benchNotifyConsume(b *testing.B, impl string) {
	rdb := newRedis(b)
	ns := namespace("notify-consume-" + impl)
	b.Cleanup(func() { dropNamespace(b, rdb, ns) })
	const perPass = notifyUsers * notifyMaxItems * 4
	fill, consume := notifyConsumer(b, rdb, ns, impl, perPass)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fill()
		b.StartTimer()
		if n := consume(); n != perPass {
			b.Fatalf("consumed %d notifications, want %d", n, perPass)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perPass), "ns/notification")
}

// notifyConsumer returns fill, which queues perPass notifications over
// notifyUsers users in namespace ns, and consume, which consumes them
// with impl (xreadgroup: the floor; notify: Consumer.RunOnce) and returns
// how many it consumed.
func notifyConsumer(b *testing.B, rdb *redis.Client, ns, impl string, perPass int64) (fill func(), consume func() int64) {
	ctx := context.Background()
	if impl == "xreadgroup" {
		streams := make([]string, notifyUsers)
		for u := range streams {
			streams[u] = ns + ":{" + notifyUser(int64(u)) + "}:s"
			if err := rdb.XGroupCreateMkStream(ctx, streams[u], "g", "0").Err(); err != nil {
				b.Fatal(err)
			}
		}
		fill = func() {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range perPass {
					u := notifyUser(i)
					p.XAdd(ctx, &redis.XAddArgs{Stream: ns + ":{" + u + "}:s", Values: []any{
						"u", u, "c", "email", "k", strconv.FormatInt(notifySeq.Add(1), 10), "p", notifyPayload}})
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		consume = func() int64 {
			var n int64
			for _, s := range streams {
				for {
					res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{s, ">"}, Count: 1000, Block: -1}).Result()
					if errors.Is(err, redis.Nil) || err == nil && len(res[0].Messages) == 0 {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					ids := make([]string, len(res[0].Messages))
					for i, m := range res[0].Messages {
						ids[i] = m.ID
					}
					if err := rdb.XAck(ctx, s, "g", ids...).Err(); err != nil {
						b.Fatal(err)
					}
					n += int64(len(ids))
				}
			}
			return n
		}
		return fill, consume
	}
	q, err := notify.New(&notify.Options{Client: rdb, Namespace: ns, DedupTTL: keyTTL, MaxDelay: time.Hour, MaxItems: notifyMaxItems})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = q.Close(context.Background()) })
	var sent atomic.Int64
	c, err := notify.NewConsumer(q, &notify.ConsumerOptions{Sender: notify.SenderFunc(func(_ context.Context, m notify.Message) error {
		sent.Add(int64(len(m.Items)))
		return nil
	})})
	if err != nil {
		b.Fatal(err)
	}
	fill = func() {
		for i := range perPass {
			if _, err := q.Enqueue(ctx, notify.Notification{User: notifyUser(i), Channel: notify.Email,
				DedupKey: strconv.FormatInt(notifySeq.Add(1), 10), Payload: notifyPayload}); err != nil {
				b.Fatal(err)
			}
		}
	}
	consume = func() int64 {
		sent.Store(0)
		for sent.Load() < perPass {
			if _, err := c.RunOnce(ctx); err != nil {
				b.Fatal(err)
			}
		}
		return sent.Load()
	}
	return fill, consume
}

// BenchmarkNotifyPaired measures the same ratios as BenchmarkNotifyEnqueue
// and BenchmarkNotifyConsume with the floor and notify interleaved, for a
// machine whose load swings between benchmarks: each op runs one block
// with the floor and the same block with notify (in alternating order),
// timing each, and the ratio notify/floor is taken per op. It reports the
// median ratio over the ops (ratio-median) and each side's median time
// per notification; ns/op covers both blocks and the untimed fills.
//
//   - op=enqueue: a block is 500 serial enqueues (XADD against
//     Queue.Enqueue).
//   - op=consume: a block is consuming 10,000 notifications over 100
//     users (XREADGROUP+XACK against Consumer.RunOnce with digests of 50),
//     each side prefilled before it is timed.
func BenchmarkNotifyPaired(b *testing.B) {
	rdb := newRedis(b)
	b.Run("op=enqueue", func(b *testing.B) {
		const block = 500
		run := map[string]func() error{}
		for _, impl := range []string{"xadd", "notify"} {
			ns := namespace("notify-paired-enq-" + impl)
			b.Cleanup(func() { dropNamespace(b, rdb, ns) })
			run[impl] = notifyEnqueuer(b, rdb, ns, impl)
		}
		pairedBlocks(b, block, func(impl string) {
			for range block {
				if err := run[impl](); err != nil {
					b.Fatal(err)
				}
			}
		}, func(string) {}, "xadd")
	})
	b.Run("op=consume", func(b *testing.B) {
		const block = notifyUsers * notifyMaxItems * 2
		fills, consumes := map[string]func(){}, map[string]func() int64{}
		for _, impl := range []string{"xreadgroup", "notify"} {
			ns := namespace("notify-paired-consume-" + impl)
			b.Cleanup(func() { dropNamespace(b, rdb, ns) })
			fill, consume := notifyConsumer(b, rdb, ns, impl, block)
			fills[impl] = fill
			consumes[impl] = consume
		}
		pairedBlocks(b, block, func(impl string) {
			if n := consumes[impl](); n != block {
				b.Fatalf("%s consumed %d, want %d", impl, n, block)
			}
		}, func(impl string) { fills[impl]() }, "xreadgroup")
	})
}

// pairedBlocks runs b.N pairs of blocks of n notifications, the floor and
// "notify" in alternating order, each after prepare (untimed), and reports
// the per-pair ratios' median and each side's median ns/notification.
func pairedBlocks(b *testing.B, n int, run, prepare func(impl string), floor string) {
	var ratios, floorNs, notifyNs []float64
	for i := range b.N {
		order := []string{floor, "notify"}
		if i%2 == 1 {
			order = []string{"notify", floor}
		}
		took := map[string]time.Duration{}
		for _, impl := range order {
			prepare(impl)
			t0 := time.Now()
			run(impl)
			took[impl] = time.Since(t0)
		}
		ratios = append(ratios, float64(took["notify"])/float64(took[floor]))
		floorNs = append(floorNs, float64(took[floor].Nanoseconds())/float64(n))
		notifyNs = append(notifyNs, float64(took["notify"].Nanoseconds())/float64(n))
	}
	median := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(ratios), "ratio-median")
	b.ReportMetric(median(floorNs), "floor-ns/notification")
	b.ReportMetric(median(notifyNs), "notify-ns/notification")
}

// BenchmarkDashboardRead measures a dashboard figure's read: the sum of a
// minute-bucketed counter over the last hour (60 buckets) and the last day
// (1,440 buckets), every bucket written.
//
//   - read=query: counters.Counters.Sum, the aggregate query (one MGET of
//     the window's buckets and the sum), which a dashboard without a cache
//     runs on every read.
//   - read=cached: counters.Dashboard.Sum, the same figure through a tier
//     cache (TTL 10 s, refresh-ahead at half of it): reads are answered
//     from L1 and the query runs in the background.
//
// Besides ns/op it reports the p50 and p99 of the reads' latencies.
func BenchmarkDashboardRead(b *testing.B) {
	rdb := newRedis(b)
	ns := namespace("counters")
	b.Cleanup(func() { dropNamespace(b, rdb, ns) })
	ctx := context.Background()
	c, err := counters.New(&counters.Options{Client: rdb, Namespace: ns, Retention: keyTTL, Bucket: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for m := range 24 * 60 {
		if err := c.AddAt("bookings", int64(m%7+1), now.Add(-time.Duration(m)*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	for _, window := range []time.Duration{time.Hour, 24 * time.Hour} {
		for _, read := range []string{"query", "cached"} {
			b.Run(fmt.Sprintf("window=%v/read=%s", window, read), func(b *testing.B) {
				f := func() (int64, error) { return c.Sum(ctx, "bookings", time.Now().Add(-window), time.Now()) }
				if read == "cached" {
					d, err := counters.NewDashboard(c, &tier.Options[int64]{TTL: 10 * time.Second})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = d.Close() })
					f = func() (int64, error) { return d.Sum(ctx, "bookings", window) }
				}
				if v, err := f(); err != nil || v == 0 {
					b.Fatalf("sum %d, %v", v, err)
				}
				var rec latency.Recorder
				sh := rec.Shard()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t0 := time.Now()
					if _, err := f(); err != nil {
						b.Fatal(err)
					}
					sh.Add(time.Since(t0))
				}
				s := rec.Summary()
				b.ReportMetric(float64(s.P50.Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(s.P99.Nanoseconds()), "p99-ns")
			})
		}
	}
}
