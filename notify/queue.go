package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/redisconf"
)

// Queue puts notifications on their users' streams. It is safe for
// concurrent use; it starts no goroutine (see [Queue.Run]).
//
// Each user has one stream (one Cluster slot per user) holding the
// notifications of every channel, read by the consumer group "notify";
// after a notification is written, the user is added to one of
// Options.Shards index shards (a sorted set scored by when the user's next
// digest is due), which is how consumers find work without scanning keys.
type Queue struct {
	o   Options
	rdb redis.UniversalClient

	mu     sync.Mutex     // serialises flushes and guards buf
	buf    []Notification // guarded by mu: accepted while Redis was down, oldest first
	nbuf   atomic.Int64   // len(buf), written under mu, read without it
	closed atomic.Bool
}

// New checks o and returns a Queue.
func New(o *Options) (*Queue, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if !redisconf.ContextTimeouts(opts.Client) {
		return nil, fmt.Errorf("%w: the client ignores context deadlines: set ContextTimeoutEnabled in its options", ErrInvalidOptions)
	}
	return &Queue{o: opts, rdb: opts.Client}, nil
}

// Must is like [New] but panics on an error.
func Must(o *Options) *Queue {
	q, err := New(o)
	if err != nil {
		panic(err)
	}
	return q
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// Enqueue queues n for its user and channel.
//
// When Redis answers, the notification is on the user's stream when
// Enqueue returns nil (or it was a duplicate: [Receipt.Duplicate]).
//
// When Redis cannot be reached (an error, a timeout, the breaker open),
// the policy is buffer-then-refuse: up to Options.MaxBuffered
// notifications are kept in this process, in order, and Enqueue returns
// nil with [Receipt.Buffered]; they are written by the next Enqueue that
// reaches Redis, by [Queue.Flush], [Queue.Run] or [Queue.Close]. Past the
// limit Enqueue returns an error wrapping [ErrBufferFull] and
// [ErrUnavailable]: the notification was not accepted. Both are counted
// (EventBuffered, EventRefused).
//
// WARNING: a buffered notification lives in process memory until it is
// flushed; a process that dies meanwhile loses it. Where "acknowledged"
// must mean "survives a crash", enqueue through an [Outbox] in the
// database transaction instead, or set Options.NoBuffer and retry.
func (q *Queue) Enqueue(ctx context.Context, n Notification) (Receipt, error) {
	if err := n.check(); err != nil {
		return Receipt{}, err
	}
	if n.DedupKey == "" {
		// Makes this queue's own retries (a flush after an unknown outcome)
		// idempotent.
		n.DedupKey = "auto:" + randomID()
	}
	if q.closed.Load() {
		return Receipt{}, ErrClosed
	}
	if q.nbuf.Load() == 0 {
		// The fast path: nothing buffered, no lock.
		r, err := q.push(ctx, n)
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return r, err
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.bufferLocked(ctx, n, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.buf) > 0 {
		// Keep the order: what was buffered goes first.
		if q.flushLocked(ctx) != nil {
			return q.bufferLocked(ctx, n, nil)
		}
	}
	r, err := q.push(ctx, n)
	if err != nil && errors.Is(err, ErrUnavailable) {
		return q.bufferLocked(ctx, n, err)
	}
	return r, err
}

func (q *Queue) bufferLocked(ctx context.Context, n Notification, cause error) (Receipt, error) {
	if cause == nil {
		cause = ErrUnavailable
	}
	if q.closed.Load() {
		// Close may have flushed the buffer already: nothing would flush
		// n. The caller learns it was not accepted.
		err := fmt.Errorf("%w: %w", ErrClosed, cause)
		q.event(ctx, Event{Kind: EventRefused, Channel: n.Channel, Items: 1, Err: err})
		return Receipt{}, err
	}
	if len(q.buf) >= q.o.MaxBuffered {
		err := fmt.Errorf("%w (%d buffered): %w", ErrBufferFull, len(q.buf), cause)
		if q.o.MaxBuffered == 0 {
			err = cause
		}
		q.event(ctx, Event{Kind: EventRefused, Channel: n.Channel, Items: 1, Err: err})
		return Receipt{}, err
	}
	q.buf = append(q.buf, n)
	q.nbuf.Store(int64(len(q.buf)))
	q.event(ctx, Event{Kind: EventBuffered, Channel: n.Channel, Items: 1, Err: cause})
	return Receipt{Buffered: true}, nil
}

// Buffered returns how many notifications wait in the local buffer.
func (q *Queue) Buffered() int {
	return int(q.nbuf.Load())
}

// Flush writes the buffered notifications to Redis, oldest first, and
// stops at the first failure (returned). A notification whose write timed
// out is written again with the same dedup key, so it is never queued
// twice.
func (q *Queue) Flush(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.flushLocked(ctx)
}

func (q *Queue) flushLocked(ctx context.Context) error {
	for len(q.buf) > 0 {
		n := q.buf[0]
		_, err := q.push(ctx, n)
		if err != nil && !errors.Is(err, ErrRejected) {
			return err
		}
		q.buf[0] = Notification{}
		q.buf = q.buf[1:]
		q.nbuf.Store(int64(len(q.buf)))
		if err != nil { // refused for good: it must not hold up the rest
			q.event(ctx, Event{Kind: EventRefused, Channel: n.Channel, Items: 1, Err: err})
			continue
		}
		q.event(ctx, Event{Kind: EventFlushed, Channel: n.Channel, Items: 1})
	}
	q.buf = nil
	return nil
}

// Run flushes the buffer every interval until ctx ends; it returns nil
// then. Run it when Options.MaxBuffered > 0 and enqueues may be rare, so
// that a buffer does not wait for the next Enqueue.
func (q *Queue) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if q.Buffered() > 0 {
				_ = q.Flush(ctx) // counted by push; retried next tick
			}
		}
	}
}

// Close flushes the buffer (bounded by ctx) and makes later calls fail
// with ErrClosed. If notifications remain, it returns an error wrapping
// [ErrUnflushed] saying how many: they were accepted and are lost when the
// process exits, unless Close is called again and flushes them (each call
// tries; once the buffer is empty Close returns nil).
func (q *Queue) Close(ctx context.Context) error {
	q.closed.Store(true)
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.flushLocked(ctx); err != nil {
		return fmt.Errorf("%w: %d left: %w", ErrUnflushed, len(q.buf), err)
	}
	return nil
}

// push writes n to its user's stream and the user to its index shard.
// The index is written after the stream, and also for a duplicate, so a
// caller that retries after an error (the stream written, the index not)
// repairs it.
func (q *Queue) push(ctx context.Context, n Notification) (Receipt, error) {
	k := userKeys(q.o.Namespace, n.User)
	var res []any
	err := q.call(ctx, func(ctx context.Context) error {
		v, err := enqueueScript.Run(ctx, q.rdb, []string{k.stream, k.dedup(n.Channel, n.DedupKey)},
			group, q.o.DedupTTL.Milliseconds(), n.User, string(n.Channel), n.DedupKey, n.Payload,
			q.o.MaxDelay.Milliseconds(), q.o.MaxItems).Slice()
		if err != nil {
			return err
		}
		res = v
		if len(res) != 3 {
			return fmt.Errorf("notify: enqueue script returned %v", v)
		}
		due, _ := res[2].(int64)
		if err := indexScript.Run(ctx, q.rdb, []string{indexKey(q.o.Namespace, shardOf(n.User, q.o.Shards))}, n.User, due).Err(); err != nil {
			// Never ErrRejected (%v drops the redis.Error): the entry is on
			// its stream already, and a retry, once the shard's key is
			// fixed, must index it.
			return fmt.Errorf("notify: index write: %v", err)
		}
		return nil
	})
	if err != nil {
		q.event(ctx, Event{Kind: EventUnavailable, Channel: n.Channel, Items: 1, Err: err})
		return Receipt{}, err
	}
	id, _ := res[1].(string)
	if queued, _ := res[0].(int64); queued == 0 {
		q.event(ctx, Event{Kind: EventDuplicate, Channel: n.Channel, Items: 1})
		return Receipt{ID: id, Duplicate: true}, nil
	}
	q.event(ctx, Event{Kind: EventEnqueued, Channel: n.Channel, Items: 1})
	return Receipt{ID: id}, nil
}

// call runs f under the breaker and Timeout; every failure wraps
// ErrUnavailable.
func (q *Queue) call(ctx context.Context, f func(ctx context.Context) error) error {
	return callRedis(ctx, q.o.Breaker, q.o.Timeout, f)
}

// A caller whose context has ended gets ErrUnavailable without a call,
// and a call its caller's context ended early (breaker.CallerLeft) says
// nothing to the breaker: callers that give up must not open the breaker
// every caller and consumer shares.
func callRedis(ctx context.Context, b Breaker, timeout time.Duration, f func(ctx context.Context) error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
	}
	if b != nil && !b.Allow() {
		return fmt.Errorf("%w: breaker open", ErrUnavailable)
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := f(cctx)
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		switch {
		case permanent(err):
			if b != nil {
				b.Success() // Redis answered
			}
			return fmt.Errorf("%w: %w", ErrRejected, err)
		case breaker.CallerLeft(ctx, time.Since(start), timeout):
			breaker.Forget(b)
		case b != nil:
			b.Failure()
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if b != nil {
		b.Success()
	}
	return nil
}

// permanent reports whether err is Redis refusing a call that no retry
// can make work: a key of another type (WRONGTYPE, at the start of a
// command's error, inside a script's on Redis 6.2).
func permanent(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), "WRONGTYPE")
}

func (q *Queue) event(ctx context.Context, e Event) {
	e.Queue = q.o.Name
	q.o.Observer.Event(ctx, e)
}

// parseID splits a stream id into its milliseconds and sequence.
func parseID(id string) (ms, seq int64) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			ms, _ = strconv.ParseInt(id[:i], 10, 64)
			seq, _ = strconv.ParseInt(id[i+1:], 10, 64)
			return ms, seq
		}
	}
	ms, _ = strconv.ParseInt(id, 10, 64)
	return ms, 0
}

// idLess orders stream ids.
func idLess(a, b string) bool {
	am, as := parseID(a)
	bm, bs := parseID(b)
	return am < bm || am == bm && as < bs
}
