package notify_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/notify"
)

// TestConsumer_DigestCount: 1,000 notifications for one user and channel
// within one window. MaxItems 100 → exactly 10 digests of 100, each sent
// as soon as it is full; MaxItems 1,000 → exactly 1 digest. MaxDelay is an
// hour, so the count rule alone decides and the result does not depend on
// timing.
func TestConsumer_DigestCount(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	for _, tt := range []struct{ maxItems, want int }{{100, 10}, {1000, 1}} {
		t.Run(fmt.Sprint("max_items=", tt.maxItems), func(t *testing.T) {
			ns := fmt.Sprint("digest", tt.maxItems)
			q := newQueue(t, rdb, notify.Options{Namespace: ns, MaxItems: tt.maxItems, MaxDelay: time.Hour})
			ids := enqueueN(t, q, "ada", notify.Email, 1000)
			rec := &notify.RecordingSender{}
			c := newConsumer(t, q, notify.ConsumerOptions{Sender: rec})
			for {
				n, err := c.RunOnce(t.Context())
				require.NoError(t, err)
				if n == 0 {
					break
				}
			}
			msgs := rec.Delivered()
			require.Len(t, msgs, tt.want)
			got := deliveredIDs(rec)
			require.Len(t, got, 1000)
			for _, id := range ids {
				require.Len(t, got[id], 1, id)
			}
			for _, m := range msgs {
				require.Len(t, m.Items, tt.maxItems)
				require.Equal(t, "ada", m.User)
			}
			keys, err := rdb.Keys(t.Context(), ns+":*:s").Result()
			require.NoError(t, err)
			for _, k := range keys { // an emptied stream lives on, empty, until it expires
				n, err := rdb.XLen(t.Context(), k).Result()
				require.NoError(t, err)
				require.Zero(t, n, k)
				ttl, err := rdb.PTTL(t.Context(), k).Result()
				require.NoError(t, err)
				require.Positive(t, ttl, k)
			}
		})
	}
}

// TestConsumer_WindowCloses: notifications below MaxItems go out as one
// digest once MaxDelay has passed (on Redis's clock).
func TestConsumer_WindowCloses(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, rdb, notify.Options{MaxItems: 1000, MaxDelay: 300 * time.Millisecond})
	enqueueN(t, q, "bob", notify.SMS, 7)
	rec := &notify.RecordingSender{}
	run(t, newConsumer(t, q, notify.ConsumerOptions{Sender: rec}))
	require.Eventually(t, func() bool { return len(rec.Delivered()) > 0 }, 10*time.Second, 5*time.Millisecond)
	msgs := rec.Delivered()
	require.Len(t, msgs, 1, "seven notifications queued within the window: one digest")
	require.Len(t, msgs[0].Items, 7)
}

// TestConsumer_StoppedMidBatch: consumer A sends digests until, on its
// fourth, the provider accepts the message and A is stopped before it
// acknowledges (its goroutine ends; its lock and index lease stay, as
// after a crash). Consumer B takes the user over once A's lease has
// expired, XAUTOCLAIMs A's pending entries and finishes. Every
// notification is delivered, no notification is delivered under two
// provider keys, and the one digest sent twice carries the same key and is
// absorbed.
func TestConsumer_StoppedMidBatch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, rdb, notify.Options{MaxItems: 5, MaxDelay: time.Hour, Shards: 4})
	var all []string
	for u := range 3 {
		for _, ch := range []notify.Channel{notify.Email, notify.SMS, notify.Push} {
			all = append(all, enqueueN(t, q, fmt.Sprint("user", u), ch, 20)...)
		}
	}
	rec := &notify.RecordingSender{}
	ctxA, stopA := context.WithCancel(t.Context())
	var sends atomic.Int32
	senderA := notify.SenderFunc(func(ctx context.Context, m notify.Message) error {
		if err := rec.Send(ctx, m); err != nil {
			return err
		}
		if sends.Add(1) == 4 {
			stopA() // the provider has it; A stops before XACK
			return errors.New("consumer stopped")
		}
		return nil
	})
	const lease = 300 * time.Millisecond
	a := newConsumer(t, q, notify.ConsumerOptions{Name: "A", Sender: senderA, Lease: lease})
	require.NoError(t, a.Run(ctxA))
	require.Len(t, rec.Delivered(), 4)

	b := newConsumer(t, q, notify.ConsumerOptions{Name: "B", Sender: rec, Lease: lease})
	run(t, b)
	require.Eventually(t, func() bool { return len(deliveredIDs(rec)) == len(all) }, 20*time.Second, 5*time.Millisecond)
	got := deliveredIDs(rec)
	for _, id := range all {
		require.Len(t, got[id], 1, "entry %s delivered under %d provider keys", id, len(got[id]))
	}
	require.Len(t, rec.Delivered(), len(all)/5)
	require.Equal(t, 1, rec.Absorbed(), "A's unacknowledged digest is sent again by B, with the same key")
	require.Zero(t, rec.Conflicts())
}

// TestQueue_Dedup: the same (user, channel, dedup key) is queued once.
func TestQueue_Dedup(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	q := newQueue(t, srv.Client(t), notify.Options{MaxItems: 1})
	n := notify.Notification{User: "u", Channel: notify.Push, DedupKey: "booking:42:confirmed"}
	r1, err := q.Enqueue(t.Context(), n)
	require.NoError(t, err)
	r2, err := q.Enqueue(t.Context(), n)
	require.NoError(t, err)
	require.True(t, r2.Duplicate)
	require.Equal(t, r1.ID, r2.ID)
	n.Channel = notify.Email
	r3, err := q.Enqueue(t.Context(), n)
	require.NoError(t, err)
	require.False(t, r3.Duplicate, "another channel")

	_, err = q.Enqueue(t.Context(), notify.Notification{User: "u", Channel: "fax"})
	require.ErrorIs(t, err, notify.ErrInvalidOptions)
}

// TestQueue_RedisDown: with Redis killed, 40 notifications are buffered
// and the next 10 refused with ErrBufferFull; after a restart Flush
// writes the 40, which are then all delivered.
func TestQueue_RedisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	obs := &countObserver{}
	q := newQueue(t, rdb, notify.Options{MaxItems: 1, MaxBuffered: 40, NoBreaker: true, Timeout: 200 * time.Millisecond, Observer: obs})
	srv.Kill()
	buffered := 0
	for i := range 50 {
		r, err := q.Enqueue(t.Context(), notify.Notification{User: fmt.Sprint("u", i%5), Channel: notify.Email, Payload: []byte{byte(i)}})
		if i < 40 {
			require.NoError(t, err)
			require.True(t, r.Buffered)
			buffered++
			continue
		}
		require.ErrorIs(t, err, notify.ErrBufferFull)
		require.ErrorIs(t, err, notify.ErrUnavailable)
	}
	require.Equal(t, 40, q.Buffered())
	require.EqualValues(t, 40, obs.n(notify.EventBuffered))
	require.EqualValues(t, 10, obs.n(notify.EventRefused))
	srv.Restart()
	// go-redis answers with its last dial error until its prober has
	// reached the server again.
	require.Eventually(t, func() bool { return q.Flush(t.Context()) == nil }, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, q.Buffered())
	require.EqualValues(t, 40, obs.n(notify.EventFlushed))

	rec := &notify.RecordingSender{}
	run(t, newConsumer(t, q, notify.ConsumerOptions{Sender: rec}))
	require.Eventually(t, func() bool { return len(rec.Delivered()) == buffered }, 10*time.Second, 5*time.Millisecond)
}

type countObserver struct{ counts [16]atomic.Int64 }

func (o *countObserver) Event(_ context.Context, e notify.Event) { o.counts[e.Kind].Add(1) }
func (o *countObserver) n(k notify.EventKind) int64              { return o.counts[k].Load() }

// TestCluster: users spread over a Redis Cluster; every script touches
// one slot (a user's, or an index shard's).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster; run without -short")
	}
	t.Parallel()
	c := redistest.StartCluster(t, nil)
	rdb := c.Client(t)
	q := newQueue(t, rdb, notify.Options{MaxItems: 4, MaxDelay: time.Hour, Timeout: 10 * time.Second})
	var all []string
	for u := range 20 {
		all = append(all, enqueueN(t, q, fmt.Sprint("u", u), notify.Email, 8)...)
	}
	rec := &notify.RecordingSender{}
	run(t, newConsumer(t, q, notify.ConsumerOptions{Sender: rec}))
	run(t, newConsumer(t, q, notify.ConsumerOptions{Sender: rec}))
	require.Eventually(t, func() bool { return len(deliveredIDs(rec)) == len(all) }, 30*time.Second, 10*time.Millisecond)
	require.Len(t, rec.Delivered(), 40)
}

// TestConsumer_ProviderKeysNeverRepeat: digest after digest of one user,
// each emptying the stream, get provider keys of their own. Before, the
// emptied stream was deleted: one created again in the same millisecond
// (or after the clock stepped back) gave old entry ids again, hence an old
// digest's provider key, and the provider absorbed the new digest as a
// repeat (381 of 3,000 lost in a helper's run). The emptied stream now
// expires after a week instead, and its next entry removes the expiry.
func TestConsumer_ProviderKeysNeverRepeat(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, rdb, notify.Options{MaxItems: 1, Shards: 1})
	rec := &notify.RecordingSender{}
	c := newConsumer(t, q, notify.ConsumerOptions{Sender: rec})
	const rounds = 500
	for i := range rounds {
		_, err := q.Enqueue(t.Context(), notify.Notification{User: "u", Channel: notify.Email, DedupKey: fmt.Sprint(i), Payload: []byte("x")})
		require.NoError(t, err)
		n, err := c.RunOnce(t.Context())
		require.NoError(t, err)
		require.Equal(t, 1, n, "round %d", i)
	}
	require.Equal(t, rounds, len(rec.Delivered()), "delivered digests")
	require.Zero(t, rec.Absorbed(), "a digest's provider key repeated an earlier one's")
	keys, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	var streams int
	for _, k := range keys {
		if typ, _ := rdb.Type(t.Context(), k).Result(); typ == "stream" {
			streams++
			n, err := rdb.XLen(t.Context(), k).Result()
			require.NoError(t, err)
			require.Zero(t, n)
			ttl, err := rdb.PTTL(t.Context(), k).Result()
			require.NoError(t, err)
			require.Positive(t, ttl, "an emptied stream expires")
			groups, err := rdb.XInfoGroups(t.Context(), k).Result()
			require.NoError(t, err)
			require.Len(t, groups, 1)
			require.Zero(t, groups[0].Consumers, "the consumer left the group once it held nothing")
		}
	}
	require.Equal(t, 1, streams)
}

// blockFirstEval returns a go-redis hook that holds the first EVALSHA
// (closing held) until release is closed, then fails it (as a Redis that
// went away would).
func blockFirstEval(held, release chan struct{}) redis.Hook {
	var once sync.Once
	return redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		first := false
		if cmd.Name() == "evalsha" {
			once.Do(func() { first = true })
		}
		if !first {
			return next(ctx, cmd)
		}
		close(held)
		<-release
		err := errors.New("connection reset (test)")
		cmd.SetErr(err)
		return err
	})
}

// TestQueue_EnqueueRacingClose: an Enqueue whose write fails while Close
// runs (Close found the buffer empty and returned) is refused with
// ErrClosed instead of being buffered where no one would flush it. Before,
// it returned Buffered and the notification was lost.
func TestQueue_EnqueueRacingClose(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	held, release := make(chan struct{}), make(chan struct{})
	rdb.AddHook(blockFirstEval(held, release))
	q := newQueue(t, rdb, notify.Options{})
	type result struct {
		r   notify.Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := q.Enqueue(context.Background(), notify.Notification{User: "u", Channel: notify.Email, DedupKey: "k", Payload: []byte("x")})
		done <- result{r, err}
	}()
	<-held
	require.NoError(t, q.Close(t.Context()), "nothing buffered yet")
	close(release)
	got := <-done
	require.ErrorIs(t, got.err, notify.ErrClosed)
	require.False(t, got.r.Buffered)
	require.Zero(t, q.Buffered())
}

// TestQueue_RejectedKeyHoldsNothingUp: a user whose stream key holds
// another type (written by something else) gets ErrRejected, not a buffered
// notification; one buffered before its key went bad is dropped and
// reported at the next flush, and the notifications behind it are written.
// Before, every error read as Redis being down: the bad one stayed at the
// head of the buffer, every later Enqueue of every user buffered behind it,
// and its failures opened the breaker.
func TestQueue_RejectedKeyHoldsNothingUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, rdb, notify.Options{Namespace: "rej", Timeout: 300 * time.Millisecond})
	ctx := t.Context()
	note := func(user string) notify.Notification {
		return notify.Notification{User: user, Channel: notify.Email, Payload: []byte("x")}
	}
	_, err := q.Enqueue(ctx, note("bad"))
	require.NoError(t, err)
	keys, err := rdb.Keys(ctx, "rej:*:s").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NoError(t, rdb.Del(ctx, keys[0]).Err())
	require.NoError(t, rdb.Set(ctx, keys[0], "not a stream", 0).Err())

	_, err = q.Enqueue(ctx, note("bad"))
	require.ErrorIs(t, err, notify.ErrRejected)
	require.NotErrorIs(t, err, notify.ErrUnavailable)
	require.Zero(t, q.Buffered())

	srv.Pause()
	for _, u := range []string{"bad", "good"} {
		r, err := q.Enqueue(ctx, note(u))
		require.NoError(t, err)
		require.True(t, r.Buffered, u)
	}
	srv.Resume()
	require.NoError(t, q.Flush(ctx))
	require.Zero(t, q.Buffered())
	r, err := q.Enqueue(ctx, note("good"))
	require.NoError(t, err)
	require.False(t, r.Buffered)
}

// releaseFault is a go-redis hook for a consumer's client: at the first
// write of the user's index by a release (the old code's ZREM, the new
// code's release script), it runs enqueue first (another instance's
// notification arriving right then), lets that write run, and fails the
// command after it (the release's next step), as a timeout or a crash
// there would.
type releaseFault struct {
	enqueue func()
	armed   atomic.Bool
	fired   atomic.Int32
}

func (h *releaseFault) hook() redis.Hook {
	return redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if !h.armed.Load() {
			return next(ctx, cmd)
		}
		switch h.fired.Load() {
		case 0:
			a := cmd.Args()
			// evalsha <sha> 1 <index> <user> ...: the release's script (the
			// claim's has the batch size where the user is).
			if cmd.Name() == "zrem" || (cmd.Name() == "evalsha" && len(a) > 4 && strings.HasSuffix(fmt.Sprint(a[3]), ":due") && fmt.Sprint(a[4]) == "u") {
				h.fired.Store(1)
				h.enqueue()
			}
		case 1:
			h.fired.Store(2)
			err := errors.New("connection reset (test)")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	})
}

// TestConsumer_FailedReleaseStrandsNothing: a notification enqueued while
// a consumer releases its user, whose release then fails halfway, is still
// delivered once the user's lease is over. Before, the release removed the
// user from the index first and checked the stream after: failing there
// left the new entry unread until the user's next notification.
func TestConsumer_FailedReleaseStrandsNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	q := newQueue(t, srv.Client(t), notify.Options{Namespace: "strand", MaxItems: 1, Shards: 1})
	crdb := srv.Client(t)
	h := &releaseFault{enqueue: func() {
		_, err := q.Enqueue(context.Background(), notify.Notification{User: "u", Channel: notify.Email, DedupKey: "2", Payload: []byte("2")})
		assert.NoError(t, err)
	}}
	crdb.AddHook(h.hook())
	cq := newQueue(t, crdb, notify.Options{Namespace: "strand", MaxItems: 1, Shards: 1})
	clock := &fakeNow{t: time.Now().Add(time.Second)} // past the first notification's due time
	rec := &notify.RecordingSender{}
	c := newConsumer(t, cq, notify.ConsumerOptions{Sender: rec, Lease: time.Minute, Now: clock.now})
	_, err := q.Enqueue(t.Context(), notify.Notification{User: "u", Channel: notify.Email, DedupKey: "1", Payload: []byte("1")})
	require.NoError(t, err)
	h.armed.Store(true)
	_, err = c.RunOnce(t.Context())
	require.Error(t, err, "the release failed")
	require.EqualValues(t, 2, h.fired.Load())
	require.Len(t, rec.Delivered(), 1)
	// The user's lease is over: on the consumer's clock, and in Redis (its
	// lock, which the failed release did not remove, expires).
	clock.add(2 * time.Minute)
	locks, err := srv.Client(t).Keys(t.Context(), "strand:*:lock").Result()
	require.NoError(t, err)
	require.Len(t, locks, 1)
	require.NoError(t, srv.Client(t).Del(t.Context(), locks[0]).Err())
	require.Eventually(t, func() bool {
		_, err := c.RunOnce(t.Context())
		return err == nil && len(rec.Delivered()) == 2
	}, 10*time.Second, time.Millisecond, "the second notification was delivered")
}

// fakeNow is a clock a test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeNow) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestQueue_BadIndexShardRepaired: an index shard key that is not a sorted
// set (written by something else) holds no user of ours: the index scripts
// delete it and go on. Before, it failed every enqueue of the shard with
// ErrUnavailable, buffered them, held every later notification of every
// user behind them, and opened the breaker; a consumer's claim of the
// shard failed too.
func TestQueue_BadIndexShardRepaired(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, rdb, notify.Options{Namespace: "ix", Shards: 1, MaxItems: 1})
	ctx := t.Context()
	require.NoError(t, rdb.Set(ctx, "ix:{ix0}:due", "not a sorted set", 0).Err())
	r, err := q.Enqueue(ctx, notify.Notification{User: "u", Channel: notify.Email, Payload: []byte("x")})
	require.NoError(t, err)
	require.False(t, r.Buffered, "the enqueue's index write repairs the shard")
	n, err := rdb.ZCard(ctx, "ix:{ix0}:due").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the user is indexed")

	require.NoError(t, rdb.Set(ctx, "ix:{ix0}:due", "not a sorted set", 0).Err())
	rec := &notify.RecordingSender{}
	c := newConsumer(t, q, notify.ConsumerOptions{Sender: rec})
	users, err := c.RunOnce(ctx)
	require.NoError(t, err, "a claim repairs the shard too")
	require.Zero(t, users, "the bad key held no user")
	_, err = q.Enqueue(ctx, notify.Notification{User: "u", Channel: notify.Email, Payload: []byte("y")})
	require.NoError(t, err)
	users, err = c.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, users)
	require.Len(t, rec.Delivered(), 2, "the entry the bad key had hidden goes out with the new one (digests of one)")
}

// TestConsumer_ResentReadGroupStrandsNothing: an XREADGROUP whose reply is
// lost and which go-redis sends again (the hook runs it once on another
// connection: the command ran, its reply never came). The first run gave
// the entry to this consumer; the resend returns nothing. The turn sees
// nothing, and its release must not take the user out of the index: the
// entry would wait, pending, until the user's next notification. The
// release counts the stream's entries and makes the user due at once.
func TestConsumer_ResentReadGroupStrandsNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	side := srv.Client(t)
	ctx := t.Context()
	q := newQueue(t, rdb, notify.Options{Namespace: "rr", MaxItems: 1, Shards: 1})
	crdb := srv.Client(t)
	var armed, fired atomic.Bool
	crdb.AddHook(redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if armed.Load() && cmd.Name() == "xreadgroup" && !fired.Swap(true) {
			_ = side.Do(ctx, cmd.Args()...).Err() // it runs; its reply is lost
		}
		return next(ctx, cmd) // go-redis's resend
	}))
	rec := &notify.RecordingSender{}
	c := newConsumer(t, newQueue(t, crdb, notify.Options{Namespace: "rr", MaxItems: 1, Shards: 1}), notify.ConsumerOptions{Sender: rec})
	_, err := q.Enqueue(ctx, notify.Notification{User: "u", Channel: notify.Email, DedupKey: "1", Payload: []byte("1")})
	require.NoError(t, err)
	armed.Store(true)
	users, err := c.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, users)
	require.True(t, fired.Load())
	require.Empty(t, rec.Delivered(), "the turn saw nothing")
	score, err := rdb.ZScore(ctx, "rr:{ix0}:due", "u").Result()
	require.NoError(t, err, "the user stays in the index")
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, score, float64(now.UnixMilli()), "and is due at once")
	users, err = c.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, users)
	require.Len(t, rec.Delivered(), 1, "the next turn claims the pending entry and sends it")
}

// TestConsumer_LockedUserGivenBack: a consumer claims a user another
// consumer is working on (a notification made the user due during that
// turn, after the turn counted the stream) and cannot take its lock. Its
// claim had moved the user's score to now + Lease, and the working
// consumer's release keeps a score it did not claim: the new notification
// waited for the lease (30 s by default). Now the claim is given back: the
// user is due after PollInterval.
func TestConsumer_LockedUserGivenBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	q := newQueue(t, rdb, notify.Options{Namespace: "lk", MaxItems: 1, Shards: 1})
	enq := func(k string) {
		_, err := q.Enqueue(ctx, notify.Notification{User: "u", Channel: notify.Email, DedupKey: k, Payload: []byte(k)})
		require.NoError(t, err)
	}
	rec := &notify.RecordingSender{}
	b := newConsumer(t, q, notify.ConsumerOptions{Sender: rec, Lease: time.Minute})
	ardb := srv.Client(t)
	var armed, fired atomic.Bool
	ardb.AddHook(redistest.CommandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if cmd.Name() == "evalsha" && armed.Swap(false) {
			// a has sent its digest (and counted the stream) and is about
			// to release the user: a notification comes, and b claims
			// the user.
			fired.Store(true)
			enq("2")
			users, err := b.RunOnce(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, users)
		}
		return next(ctx, cmd)
	}))
	sendThenArm := notify.SenderFunc(func(ctx context.Context, m notify.Message) error {
		err := rec.Send(ctx, m)
		armed.Store(true) // the next script a runs is its release's
		return err
	})
	a := newConsumer(t, newQueue(t, ardb, notify.Options{Namespace: "lk", MaxItems: 1, Shards: 1}), notify.ConsumerOptions{Sender: sendThenArm, Lease: time.Minute})
	enq("1")
	users, err := a.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, users)
	require.True(t, fired.Load(), "the hook ran")
	require.Len(t, rec.Delivered(), 1, "a sent the first")
	score, err := rdb.ZScore(ctx, "lk:{ix0}:due", "u").Result()
	require.NoError(t, err)
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, score, float64(now.UnixMilli())+5, "due after b's PollInterval (5 ms), not after its minute's lease")
}

// TestQueue_GoneCallersOpenNothing: callers whose contexts have ended
// make no call and say nothing to the breaker (five of them opened it:
// every later enqueue was buffered and consumers refused for the
// cool-down). Their notifications are buffered, and the next caller's
// enqueue writes them first.
func TestQueue_GoneCallersOpenNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	q := newQueue(t, rdb, notify.Options{Namespace: "gone", Shards: 1})
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 5 {
		r, err := q.Enqueue(gone, notify.Notification{User: fmt.Sprint("u", i), Channel: notify.Email, Payload: []byte("x")})
		require.NoError(t, err)
		require.True(t, r.Buffered)
	}
	r, err := q.Enqueue(t.Context(), notify.Notification{User: "healthy", Channel: notify.Email, Payload: []byte("x")})
	require.NoError(t, err)
	require.False(t, r.Buffered, "a caller on a healthy Redis is written, not buffered")
	require.Zero(t, q.Buffered(), "the gone callers' notifications went first")
}

// TestConsumer_TruncatedTurnWaits: a turn reads a full batch (Batch 2 of 3
// entries) and sends nothing (the provider fails). It was due again at
// once because more waited behind the batch, read the same entries, and
// called the failing provider in a loop; now it waits RetryDelay.
func TestConsumer_TruncatedTurnWaits(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	q := newQueue(t, rdb, notify.Options{Namespace: "tr", MaxItems: 1, Shards: 1})
	enqueueN(t, q, "u", notify.Email, 3)
	var sends atomic.Int32
	failing := notify.SenderFunc(func(context.Context, notify.Message) error {
		sends.Add(1)
		return errors.New("provider down")
	})
	c := newConsumer(t, q, notify.ConsumerOptions{Sender: failing, Batch: 2, RetryDelay: time.Hour})
	users, err := c.RunOnce(ctx)
	require.Error(t, err)
	require.Equal(t, 1, users)
	require.EqualValues(t, 1, sends.Load())
	score, err := rdb.ZScore(ctx, "tr:{ix0}:due", "u").Result()
	require.NoError(t, err)
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	require.Greater(t, score, float64(now.Add(30*time.Minute).UnixMilli()), "due after RetryDelay, not at once")
	users, err = c.RunOnce(ctx)
	require.NoError(t, err)
	require.Zero(t, users)
	require.EqualValues(t, 1, sends.Load(), "the failing provider is not called again")
}
