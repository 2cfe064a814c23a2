// Package demo runs the notification and activity part of the booking
// application's demo: each booking queues a confirmation for its guest
// (email) and its expert (push), digested per user and channel, and counts
// the booking and its guest in activity counters; at the end it drains the
// queue and reads a dashboard figure through a tier cache, timed against
// the aggregate query.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/internal/rediskeys"
	"github.com/tiercache/tiercache/notify"
	"github.com/tiercache/tiercache/tier"
)

// Config configures [Start].
type Config struct {
	// Client is the Redis client (ContextTimeoutEnabled); Stop does not
	// close it. Required.
	Client redis.UniversalClient
	// Namespace prefixes the demo's keys. Default: "demo-notify-" and a
	// random suffix; Stop deletes its keys.
	Namespace string
	// MaxDelay and MaxItems are the digests' window and size. Default: 1 s
	// and 20.
	MaxDelay time.Duration
	MaxItems int
	// RetryEvery makes every RetryEvery-th booking enqueue its
	// confirmations a second time, as a retried request would: the dedup
	// key absorbs them. Default: 10; negative: never.
	RetryEvery int
}

// Demo is a running notification and activity demo. Its methods are safe
// for concurrent use.
type Demo struct {
	cfg      Config
	q        *notify.Queue
	rec      *notify.RecordingSender
	ctr      *counters.Counters
	events   *events
	stop     context.CancelFunc
	wg       sync.WaitGroup
	bookings atomic.Int64
	failed   atomic.Int64
	stopped  atomic.Bool
}

// Start creates the queue, a consumer and the counters, and starts the
// consumer and the counters' flush loop.
func Start(ctx context.Context, cfg Config) (*Demo, error) {
	if cfg.Client == nil {
		return nil, errors.New("notify demo: no Client")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "demo-notify-" + strings.ToLower(rand.Text()[:8])
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = time.Second
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = 20
	}
	if cfg.RetryEvery == 0 {
		cfg.RetryEvery = 10
	}
	d := &Demo{cfg: cfg, rec: &notify.RecordingSender{}, events: &events{}}
	var err error
	d.q, err = notify.New(&notify.Options{Client: cfg.Client, Namespace: cfg.Namespace + "-q", Shards: 4,
		MaxDelay: cfg.MaxDelay, MaxItems: cfg.MaxItems, DedupTTL: 10 * time.Minute, Observer: d.events})
	if err != nil {
		return nil, fmt.Errorf("notify demo: %w", err)
	}
	c, err := notify.NewConsumer(d.q, &notify.ConsumerOptions{Sender: d.rec, PollInterval: 20 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("notify demo: %w", err)
	}
	d.ctr, err = counters.New(&counters.Options{Client: cfg.Client, Namespace: cfg.Namespace + "-c", Retention: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("notify demo: %w", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = stop
	d.wg.Go(func() { _ = c.Run(runCtx) })
	d.wg.Go(func() { _ = d.ctr.Run(runCtx, 200*time.Millisecond) })
	return d, nil
}

// Booked queues the confirmations of booking id (guest by email, expert by
// push) and counts it. It does not wait for the sends.
func (d *Demo) Booked(ctx context.Context, id, guest, expert int64) {
	if d.stopped.Load() {
		return
	}
	d.bookings.Add(1)
	sid := strconv.FormatInt(id, 10)
	ns := []notify.Notification{
		{User: "guest-" + strconv.FormatInt(guest, 10), Channel: notify.Email, DedupKey: "booking:" + sid + ":guest",
			Payload: []byte(`{"t":"booking_confirmed","booking":` + sid + `}`)},
		{User: "expert-" + strconv.FormatInt(expert, 10), Channel: notify.Push, DedupKey: "booking:" + sid + ":expert",
			Payload: []byte(`{"t":"new_booking","booking":` + sid + `}`)},
	}
	times := 1
	if d.cfg.RetryEvery > 0 && id%int64(d.cfg.RetryEvery) == 0 {
		times = 2
	}
	for range times {
		for _, n := range ns {
			if _, err := d.q.Enqueue(ctx, n); err != nil {
				d.failed.Add(1)
			}
		}
	}
	if d.ctr.Add("bookings", 1) != nil || d.ctr.AddUnique("guests", strconv.FormatInt(guest, 10)) != nil {
		d.failed.Add(1)
	}
}

// Report is what the demo did.
type Report struct {
	// Bookings is how many bookings called Booked.
	Bookings int64
	// Enqueued is the notifications queued; Duplicates the second enqueues
	// of retried bookings that their dedup key absorbed; Failed the
	// enqueues and increments refused.
	Enqueued, Duplicates, Failed int64
	// Digests is the messages sent (provider calls), Notified the
	// notifications they held, Absorbed the sends the provider absorbed by
	// their idempotency key, Left the notifications not sent when the
	// drain gave up.
	Digests, Notified, Absorbed, Left int64
	// BookingsLastHour is the dashboard figure, read through the tier
	// cache; DistinctGuests its unique count (HyperLogLog).
	BookingsLastHour, DistinctGuests int64
	// CachedP50 and CachedP99 are the cached figure's read latencies,
	// QueryP50 and QueryP99 the aggregate query's.
	CachedP50, CachedP99, QueryP50, QueryP99 time.Duration
}

// Stop stops taking bookings, waits for the queued notifications to be
// sent (at most MaxDelay plus 5 seconds), flushes the counters, reads the
// dashboard figure, deletes the demo's keys and returns the report.
func (d *Demo) Stop(ctx context.Context) (*Report, error) {
	d.stopped.Store(true)
	rep := &Report{Bookings: d.bookings.Load(), Failed: d.failed.Load(),
		Enqueued: d.events.n(notify.EventEnqueued), Duplicates: d.events.n(notify.EventDuplicate)}
	deadline := time.Now().Add(d.cfg.MaxDelay + 5*time.Second)
	t := time.NewTicker(10 * time.Millisecond)
	for d.notified() < rep.Enqueued && time.Now().Before(deadline) && ctx.Err() == nil {
		<-t.C
	}
	t.Stop()
	d.stop()
	d.wg.Wait()
	defer func() { _ = rediskeys.DeleteMatching(context.WithoutCancel(ctx), d.cfg.Client, d.cfg.Namespace+"-*") }()
	_ = d.q.Close(ctx)
	rep.Digests, rep.Notified = int64(len(d.rec.Delivered())), d.notified()
	rep.Absorbed, rep.Left = int64(d.rec.Absorbed()), rep.Enqueued-rep.Notified
	if err := d.ctr.Flush(ctx); err != nil {
		return rep, fmt.Errorf("notify demo: flush counters: %w", err)
	}
	if err := d.dashboard(ctx, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

func (d *Demo) notified() int64 {
	var n int64
	for _, m := range d.rec.Delivered() {
		n += int64(len(m.Items))
	}
	return n
}

// dashboard reads the figure through a Dashboard (its first read runs the
// query; the next ones are answered from L1) and times both.
func (d *Demo) dashboard(ctx context.Context, rep *Report) error {
	dash, err := counters.NewDashboard(d.ctr, &tier.Options[int64]{Name: "demo-dashboard", TTL: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("notify demo: %w", err)
	}
	defer dash.Close()
	if rep.BookingsLastHour, err = dash.Sum(ctx, "bookings", time.Hour); err != nil {
		return fmt.Errorf("notify demo: dashboard: %w", err)
	}
	if rep.DistinctGuests, err = dash.Unique(ctx, "guests", time.Hour); err != nil {
		return fmt.Errorf("notify demo: dashboard: %w", err)
	}
	cached := make([]time.Duration, 5000)
	for i := range cached {
		t0 := time.Now()
		if _, err := dash.Sum(ctx, "bookings", time.Hour); err != nil {
			return fmt.Errorf("notify demo: dashboard: %w", err)
		}
		cached[i] = time.Since(t0)
	}
	query := make([]time.Duration, 200)
	for i := range query {
		t0 := time.Now()
		now := time.Now()
		if _, err := d.ctr.Sum(ctx, "bookings", now.Add(-time.Hour), now); err != nil {
			return fmt.Errorf("notify demo: query: %w", err)
		}
		query[i] = time.Since(t0)
	}
	rep.CachedP50, rep.CachedP99 = percentile(cached, 0.5), percentile(cached, 0.99)
	rep.QueryP50, rep.QueryP99 = percentile(query, 0.5), percentile(query, 0.99)
	return nil
}

func percentile(d []time.Duration, q float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// Print writes the report as two tables.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "confirmations (digested)\tbookings\tqueued\tduplicates absorbed (dedup key)\tsends (digests)\tnotifications sent\tprovider calls saved\tre-sends absorbed (provider key)\tleft\tfailed\n")
	saved := 0.0
	if r.Notified > 0 {
		saved = 100 * (1 - float64(r.Digests)/float64(r.Notified))
	}
	fmt.Fprintf(tw, "\t%d\t%d\t%d\t%d\t%d\t%.0f%%\t%d\t%d\t%d\n", r.Bookings, r.Enqueued, r.Duplicates, r.Digests, r.Notified, saved, r.Absorbed, r.Left, r.Failed)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "dashboard\tvalue\tcached read p50\tp99\taggregate query p50\tp99\n")
	fmt.Fprintf(tw, "bookings, last hour\t%d\t%v\t%v\t%v\t%v\n", r.BookingsLastHour, round(r.CachedP50), round(r.CachedP99), round(r.QueryP50), round(r.QueryP99))
	fmt.Fprintf(tw, "distinct guests, last hour\t%d\t\t\t\t\n", r.DistinctGuests)
	return tw.Flush()
}

func round(d time.Duration) time.Duration {
	if d < time.Microsecond {
		return d.Round(10 * time.Nanosecond)
	}
	return d.Round(100 * time.Nanosecond)
}

// events counts the queue's events.
type events struct{ counts [16]atomic.Int64 }

func (e *events) Event(_ context.Context, ev notify.Event) { e.counts[ev.Kind].Add(1) }
func (e *events) n(k notify.EventKind) int64               { return e.counts[k].Load() }
