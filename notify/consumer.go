package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Consumer reads the users' streams in the consumer group "notify",
// groups their notifications into digests and hands each digest to its
// Sender. Any number of consumers, in any number of processes, may run on
// one Namespace. It is safe for concurrent use; it starts no goroutine
// (see [Consumer.Run]).
//
// How a consumer finds and owns work:
//
//  1. It polls the index shards for users whose next digest is due and
//     pushes their score Lease ahead (one script per shard), so another
//     consumer does not pick them meanwhile and a user whose consumer dies
//     comes back after Lease.
//  2. For each user it takes the user's lock (SET NX PX Lease in the user's
//     slot). Held, it XAUTOCLAIMs every entry pending in the group (those
//     of a crashed consumer, whose lock has expired, and those left waiting
//     for their window by an earlier turn) and reads the new ones
//     (XREADGROUP >).
//  3. It plans the digests (see the package doc), sends the ready ones and
//     acknowledges each sent digest (XACK and XDEL in one MULTI). An entry
//     is acknowledged only after its digest was sent: delivery is at least
//     once, and a digest sent again carries the same provider key.
//  4. It counts the group's pending entries (more than the turn left
//     pending: a lost reply hid some, and the user is due at once), then
//     scores the user in the index at its next due time, or
//     removes it, only if its score is still the claim's; an enqueue's
//     index write always moves the score, so a release never drops a user
//     whose entry came after its read. No notification is stranded
//     whatever the interleaving with enqueues. A consumer that finds the
//     user locked by another gives its claim back (due after PollInterval).
//
// Why a lock and not only XAUTOCLAIM's idle time: a digest keeps entries
// pending for up to MaxDelay on purpose, so an entry's idle time cannot
// tell "waiting for its window" from "its consumer crashed". The lock's
// lease can: it is the idle time after which a crashed consumer's entries
// are reclaimed.
type Consumer struct {
	q *Queue
	o ConsumerOptions
	w window
}

// NewConsumer returns a consumer of q's streams.
func NewConsumer(q *Queue, o *ConsumerOptions) (*Consumer, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Consumer{q: q, o: opts, w: window{maxDelay: q.o.MaxDelay.Milliseconds(), maxItems: q.o.MaxItems}}, nil
}

// Run consumes until ctx ends, then returns nil. Errors reaching Redis are
// reported to the Observer and retried after PollInterval. Run may be
// called from several goroutines for more parallelism.
func (c *Consumer) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		n, _ := c.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 {
			continue
		}
		t.Reset(c.o.PollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce makes one pass over the index shards, works on every user whose
// digest is due, and returns how many users it worked on; the error joins
// what failed.
func (c *Consumer) RunOnce(ctx context.Context) (int, error) {
	shards := c.q.o.Shards
	off := rand.IntN(shards)
	n := 0
	var errs []error
	for i := range shards {
		if ctx.Err() != nil {
			break
		}
		s := (off + i) % shards
		users, claimed, err := c.claim(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, u := range users {
			if err := c.work(ctx, s, u, claimed); err != nil {
				errs = append(errs, err)
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (c *Consumer) call(ctx context.Context, f func(ctx context.Context) error) error {
	err := c.q.call(ctx, f)
	if err != nil {
		c.q.event(ctx, Event{Kind: EventUnavailable, Err: err})
	}
	return err
}

// claim takes the due users of a shard; each now has the score claimed
// (the claim's time + Lease + a random fraction: see claimScript) in the
// index.
func (c *Consumer) claim(ctx context.Context, shard int) (users []string, claimed float64, err error) {
	frac := float64(1+rand.IntN(4095)) / 4096 // exact in a double, and in its decimal form
	err = c.call(ctx, func(ctx context.Context) error {
		args := []any{c.o.Batch, c.o.Lease.Milliseconds(), strconv.FormatFloat(frac, 'f', -1, 64)}
		if c.o.Now != nil {
			args = append(args, c.o.Now().UnixMilli())
		}
		v, err := claimScript.Run(ctx, c.q.rdb, []string{indexKey(c.q.o.Namespace, shard)}, args...).Slice()
		if err != nil {
			return err
		}
		if len(v) == 2 {
			now, _ := v[0].(int64)
			claimed = float64(now+c.o.Lease.Milliseconds()) + frac // as the script adds them
			us, _ := v[1].([]any)
			for _, u := range us {
				if s, ok := u.(string); ok {
					users = append(users, s)
				}
			}
		}
		return nil
	})
	return users, claimed, err
}

// work is one turn on one user (steps 2 to 4 of the type's doc), claimed
// from shard with score claimed.
func (c *Consumer) work(ctx context.Context, shard int, user string, claimed float64) error {
	k := userKeys(c.q.o.Namespace, user)
	token := randomID()
	var now int64
	err := c.call(ctx, func(ctx context.Context) error {
		var err error
		now, err = lockScript.Run(ctx, c.q.rdb, []string{k.lock}, token, c.o.Lease.Milliseconds()).Int64()
		return err
	})
	if err != nil {
		return err
	}
	if now < 0 {
		// Another consumer works on the user. Our claim moved the user's
		// score to now + Lease, and that consumer's release keeps a score
		// it did not claim: without this, a notification that came during
		// its turn would wait for our lease. The user comes back after
		// PollInterval (one more turn if there is nothing to do), on the
		// index's clock (the claim's time: on a Cluster the lock's node
		// may have another).
		next := int64(claimed) - c.o.Lease.Milliseconds() + c.o.PollInterval.Milliseconds()
		return c.call(ctx, func(ctx context.Context) error {
			return c.releaseIndex(ctx, shard, user, claimed, next)
		})
	}
	if c.o.Now != nil {
		now = c.o.Now().UnixMilli()
	}
	es, truncated, err := c.read(ctx, k.stream)
	if err != nil {
		return err // the lock expires; the index brings the user back after Lease
	}
	var lastMs int64
	if len(es) > 0 {
		lastMs = es[len(es)-1].ms
	}
	byCh := map[Channel][]entry{}
	var chans []Channel
	for _, e := range es {
		if _, ok := byCh[e.ch]; !ok {
			chans = append(chans, e.ch)
		}
		byCh[e.ch] = append(byCh[e.ch], e)
	}
	remaining := 0
	progressed := false // a digest was sent (its entries are gone)
	var nextDue int64
	due := func(t int64) {
		if t > 0 && (nextDue == 0 || t < nextDue) {
			nextDue = t
		}
	}
	var errs []error
	prefs := c.preferences(user)
	for _, ch := range chans {
		ready, rest, next := c.w.plan(byCh[ch], now, truncated, lastMs)
		remaining += rest
		due(next)
		if len(ready) > 0 {
			until, err := prefs(ctx, ch, now)
			if errors.Is(err, errBadPreferences) {
				// Quiet hours that cannot be applied are ignored: the digest
				// goes out, RunOnce's error says why.
				errs = append(errs, err)
				until, err = 0, nil
			}
			if until > 0 || err != nil {
				held := 0
				for _, d := range ready {
					held += len(d)
				}
				remaining += held
				if err != nil {
					errs = append(errs, err)
					until = now + c.o.RetryDelay.Milliseconds()
				}
				due(until)
				c.q.event(ctx, Event{Kind: EventHeld, Channel: ch, Items: held, Err: err})
				continue
			}
		}
		for i, d := range ready {
			if ctx.Err() != nil {
				return ctx.Err() // stopped: leave the rest (and the lock) as a crash would
			}
			if err := c.send(ctx, k.stream, user, ch, d); err != nil {
				errs = append(errs, err)
				for _, left := range ready[i:] {
					remaining += len(left)
				}
				due(now + c.o.RetryDelay.Milliseconds())
				break
			}
			progressed = true
		}
	}
	if truncated {
		// More waits behind what was read. Due at once only if this turn
		// removed some of it: the next read starts with the oldest pending
		// entries, so after a turn that sent nothing (every digest held by
		// quiet hours, failed, or waiting for its window) it would read the
		// same ones and spin. Then the earliest of their times decides.
		if progressed {
			due(now)
		}
		remaining++
	}
	if err := c.release(ctx, shard, user, k, token, claimed, remaining, nextDue); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// preferences returns the quiet-hours check of one user's turn: when the
// quiet hours holding ch at now end (unix ms), 0 if ch is not held. The
// user's preferences are read once per turn, at the first ready digest.
// An error reading them holds the digest for RetryDelay: a digest is not
// sent in the middle of someone's night because their preferences were
// unreadable. Preferences that cannot be applied (an unknown time zone,
// hours outside [0, 24h)) are an error wrapping errBadPreferences.
func (c *Consumer) preferences(user string) func(ctx context.Context, ch Channel, now int64) (int64, error) {
	var (
		p    Preferences
		err  error
		read bool
	)
	return func(ctx context.Context, ch Channel, now int64) (int64, error) {
		if c.o.Preferences == nil {
			return 0, nil
		}
		if !read {
			read = true
			p, err = c.o.Preferences.Preferences(ctx, user)
			if err != nil {
				err = fmt.Errorf("notify: preferences of a user: %w", err)
			}
		}
		if err != nil {
			return 0, err
		}
		until, err := p.quietUntil(ch, now)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errBadPreferences, err)
		}
		return until, nil
	}
}

// errBadPreferences marks preferences that cannot be applied.
var errBadPreferences = errors.New("notify: quiet hours ignored")

// read claims the group's pending entries of the stream and reads the new
// ones, at most Batch in all, in stream order. truncated reports that the
// limit was reached (more may be waiting).
func (c *Consumer) read(ctx context.Context, stream string) (es []entry, truncated bool, err error) {
	var msgs []redis.XMessage
	claimed := 0
	err = c.call(ctx, func(ctx context.Context) error {
		start := "0-0"
		for len(msgs) < c.o.Batch {
			m, next, err := c.q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: stream, Group: group, Consumer: c.o.Name,
				MinIdle: 0, Start: start, Count: int64(c.o.Batch - len(msgs)),
			}).Result()
			if err != nil {
				if isNoGroup(err) {
					return nil
				}
				return err
			}
			msgs = append(msgs, m...)
			claimed += len(m)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
		if len(msgs) >= c.o.Batch {
			return nil
		}
		res, err := c.q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: c.o.Name, Streams: []string{stream, ">"},
			Count: int64(c.o.Batch - len(msgs)), Block: -1,
		}).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) || isNoGroup(err) {
				return nil
			}
			return err
		}
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if claimed > 0 {
		c.q.event(ctx, Event{Kind: EventClaimed, Items: claimed})
	}
	es = make([]entry, 0, len(msgs))
	for _, m := range msgs {
		e := entry{id: m.ID}
		e.ms, _ = parseID(m.ID)
		e.user, _ = m.Values["u"].(string)
		ch, _ := m.Values["c"].(string)
		e.ch = Channel(ch)
		e.dedup, _ = m.Values["k"].(string)
		p, _ := m.Values["p"].(string)
		e.payload = []byte(p)
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b entry) int {
		switch {
		case idLess(a.id, b.id):
			return -1
		case idLess(b.id, a.id):
			return 1
		}
		return 0
	})
	return es, len(msgs) >= c.o.Batch, nil
}

func isNoGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && len(re.Error()) >= 7 && re.Error()[:7] == "NOGROUP"
}

// send hands one digest to the Sender and, once it is accepted,
// acknowledges and deletes its entries.
func (c *Consumer) send(ctx context.Context, stream, user string, ch Channel, d []entry) error {
	ids := make([]string, len(d))
	items := make([]Item, len(d))
	for i, e := range d {
		ids[i] = e.id
		items[i] = e.item()
	}
	m := Message{User: user, Channel: ch, Items: items, IdempotencyKey: ProviderKey(user, ch, ids)}
	if err := c.o.Sender.Send(ctx, m); err != nil {
		c.q.event(ctx, Event{Kind: EventSendFailed, Channel: ch, Items: len(d), Err: err})
		return fmt.Errorf("notify: send %s digest of %d: %w", ch, len(d), err)
	}
	c.q.event(ctx, Event{Kind: EventSent, Channel: ch, Items: len(d)})
	return c.call(ctx, func(ctx context.Context) error {
		_, err := c.q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.XAck(ctx, stream, group, ids...)
			p.XDel(ctx, stream, ids...)
			return nil
		})
		return err
	})
}

// release scores the user at its next due time (or removes it from the
// index) unless something was enqueued since the claim (releaseScript),
// then unlocks the user. First it counts the group's pending entries:
// more than the turn left pending means entries delivered to this
// consumer that it never saw (an XREADGROUP whose reply was lost and which
// go-redis sent again: the first run gave this consumer entries the resend
// does not return), and the user is due at once. (Entries enqueued since
// the read are not pending: their own index writes schedule them. An
// enqueue writes the stream, then the index: its index write came before
// ours, and the score moved, so ours keeps it due; or after, and it
// stands.) A failure leaves the user in the index.
func (c *Consumer) release(ctx context.Context, shard int, user string, k keys, token string, claimed float64, remaining int, nextDue int64) error {
	return c.call(ctx, func(ctx context.Context) error {
		p, err := c.q.rdb.XPending(ctx, k.stream, group).Result()
		if err != nil && !isNoGroup(err) {
			return err
		}
		if p != nil && p.Count > int64(remaining) {
			remaining, nextDue = int(p.Count), 0
		}
		if remaining > 0 && nextDue == 0 {
			nextDue = 1 // due at once
		}
		if remaining == 0 {
			nextDue = 0
		}
		if err := c.releaseIndex(ctx, shard, user, claimed, nextDue); err != nil {
			return err
		}
		return unlockScript.Run(ctx, c.q.rdb, []string{k.lock, k.stream}, token, emptyStreamTTL.Milliseconds(), group, c.o.Name).Err()
	})
}

// releaseIndex runs releaseScript: the user leaves the index (next 0) or
// is due at next if its score is still the claim's, else it is due at the
// earlier of its score and next.
func (c *Consumer) releaseIndex(ctx context.Context, shard int, user string, claimed float64, next int64) error {
	return releaseScript.Run(ctx, c.q.rdb, []string{indexKey(c.q.o.Namespace, shard)}, user, strconv.FormatFloat(claimed, 'f', -1, 64), next).Err()
}
