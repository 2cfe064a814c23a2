// subscribe.go holds the subscription: one SUBSCRIBE per channel, confirmations, refusals and the read loop.

package invalidate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Unregister implements tier.Publisher.
func (r *reg) Unregister() {
	b := r.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.regs[r.channel] == r {
		delete(b.regs, r.channel)
		b.changedLocked() // it may have been the last channel Ready waited for
		if b.ps != nil {
			_ = b.writeLocked(context.Background(), nil, r.channel)
		}
	}
}

// psCmd is a SUBSCRIBE (r != nil) or UNSUBSCRIBE of one channel, written on
// the subscription's connection.
type psCmd struct {
	r       *reg
	channel string
}

// writeLocked sends SUBSCRIBE of r's channel (r != nil) or UNSUBSCRIBE of
// channel on b.ps, and queues it in b.unread. Each command names one
// channel: Redis answers the commands of a connection in order, each with
// its confirmation or an error, so a refusal is matched to its channel and
// refuses no other (one SUBSCRIBE of several channels is refused as a
// whole when the user may not use one of them).
//
// A failed write closes b.ps, so the receiver replaces it: go-redis would
// otherwise reconnect on its own and resubscribe every channel with one
// command. b.mu must be held and b.ps not nil.
func (b *Bus) writeLocked(ctx context.Context, r *reg, channel string) error {
	b.unread = append(b.unread, psCmd{r: r, channel: channel})
	var err error
	if r != nil {
		err = b.ps.Subscribe(ctx, channel)
	} else {
		err = b.ps.Unsubscribe(ctx, channel)
	}
	if err != nil {
		_ = b.ps.Close()
	}
	return err
}

// receive runs one subscription until it fails, goes silent, is found on
// a node this bus does not publish to, or ctx ends; it reports whether any
// of its channels was confirmed. Each channel is confirmed or refused on
// its own; a refused one is retried on the same connection (see
// [Bus.refused]).
func (b *Bus) receive(ctx context.Context) (confirmed bool) {
	ps, node := b.topo.subscription(ctx, b.firstChannel())
	// Closing the subscription ends a ReceiveTimeout at once, so Run
	// returns within milliseconds of ctx's end rather than a heartbeat.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	if err := b.subscribeAll(ctx, ps); err != nil {
		_ = ps.Close()
		if ctx.Err() == nil {
			b.topo.failed(node)
		}
		return false
	}
	b.lastHeard.Store(time.Now().UnixNano()) // a grace period for the new connection
	defer func() {
		b.mu.Lock()
		b.ps, b.unread = nil, nil
		for _, r := range b.regs {
			r.confirmed.Store(false)
			r.joining.Store(false)
			r.peers.confirmed(0)
			r.subscribed = false
			r.sink.LimitAge(b.o.StaleBound, "bus_down")
		}
		if b.probe != nil {
			b.probe.confirmed.Store(false)
		}
		b.changedLocked()
		b.mu.Unlock()
		_ = ps.Close()
		if ctx.Err() == nil {
			// On Cluster, subscribe elsewhere next time, and have the
			// slot map reloaded.
			b.topo.failed(node)
		}
	}()
	for {
		timeout := b.o.Heartbeat
		if next := b.retry(ctx); next != 0 {
			timeout = min(timeout, max(time.Duration(next-time.Now().UnixNano()), time.Millisecond))
		}
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		now := time.Now().UnixNano()
		if err != nil {
			if ctx.Err() != nil {
				return confirmed
			}
			var reply redis.Error
			if errors.As(err, &reply) {
				// Redis refused a command (a SUBSCRIBE an ACL denies, say).
				// That proves the connection answers, not that it hears
				// what is published: lastHeard is not moved, or retries
				// (at least once a second) would keep a subscription left
				// on a demoted master from ever counting as silent.
				if !b.refused(err, now) {
					return confirmed
				}
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && now-b.lastHeard.Load() <= int64(b.o.DeadAfter) {
				continue
			}
			return confirmed // an error, or silence: a new connection
		}
		b.lastHeard.Store(now)
		switch m := msg.(type) {
		case *redis.Subscription:
			r, ok := b.answered(m.Kind, m.Channel)
			if !ok {
				return confirmed
			}
			if r != nil {
				confirmed = true
				clear(r.seen)
				r.peers.confirmed(now)
				// Anything may have been missed before this point.
				r.sink.Untrust(now, "subscribed")
				b.join(r)
			}
		case *redis.Message:
			if r := b.lookup(m.Channel); r != nil && b.handle(r, m.Payload, now) && r.joining.CompareAndSwap(true, false) {
				// The first message of this bus heard back on the new
				// subscription: the others can hear it too (see join).
				r.sink.LimitAge(0, "")
				b.told(r, ps)
			}
		}
	}
}

// subscribeAll subscribes ps to every registered channel (and the probe),
// then makes it the bus's subscription.
//
// The first SUBSCRIBE connects (dial, auth), which can take as long as the
// client's dial timeout; it is written before ps is published in b.ps, so
// that nothing else writes on ps meanwhile and b.mu, which Publish and the
// heartbeat loop take, is not held. The registrations made or removed
// meanwhile are caught up once ps is published.
func (b *Bus) subscribeAll(ctx context.Context, ps *redis.PubSub) error {
	b.mu.Lock()
	regs := make([]*reg, 0, len(b.regs)+1)
	if b.probe != nil && !b.probeOff.Load() {
		// First: its answer is read before any channel's confirmation, so
		// a refusal is known by the time the bus is Ready.
		regs = append(regs, b.probe)
	}
	for _, r := range b.regs {
		r.retryAt = 0
		regs = append(regs, r)
	}
	b.mu.Unlock()
	unread := make([]psCmd, 0, len(regs))
	for _, r := range regs {
		unread = append(unread, psCmd{r: r, channel: r.channel})
		if err := ps.Subscribe(ctx, r.channel); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ps, b.unread = ps, unread
	b.psGen++
	if err := b.catchUpLocked(ctx, regs); err != nil {
		b.ps, b.unread = nil, nil
		return err
	}
	return nil
}

// catchUpLocked subscribes b.ps to the channels registered since regs was
// taken, and unsubscribes it from those unregistered since. b.mu must be
// held.
func (b *Bus) catchUpLocked(ctx context.Context, regs []*reg) error {
	for ch, r := range b.regs {
		if !slices.Contains(regs, r) {
			if err := b.writeLocked(ctx, r, ch); err != nil {
				return err
			}
		}
	}
	for _, r := range regs {
		if r != b.probe && b.regs[r.channel] != r {
			if err := b.writeLocked(ctx, nil, r.channel); err != nil {
				return err
			}
		}
	}
	return nil
}

// join starts the use of r's channel on a subscription just confirmed. Its
// cache serves no L1 entry until this bus hears one of its own messages
// back on the channel (a heartbeat, published at once): until then, the
// other instances may not know this one is live, and an acknowledged
// invalidation (tier.Cache.DeleteAndWait) would not wait for it. Once it
// is heard, every other instance hears this one before its own next ack
// request comes back to it (one node, one order), or this one hears that
// request, and the invalidation before it, before its own message. It
// costs L1 hits for one round trip after each (re)subscription.
// Receiver goroutine only.
func (b *Bus) join(r *reg) {
	r.joining.Store(true)
	r.sink.LimitAge(time.Nanosecond, "bus_down")
	select {
	case b.reqs <- &pubReq{r: r, heartbeat: true}:
	default: // the sender is backed up; the next heartbeat will do
	}
}

// told records that r's cache was told its channel is subscribed on ps,
// for Ready.
func (b *Bus) told(r *reg, ps *redis.PubSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ps == ps && r.confirmed.Load() {
		r.subscribed = true
		b.changedLocked()
	}
}

// firstChannel returns the registered channel that sorts first, or "".
func (b *Bus) firstChannel() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := ""
	for ch := range b.regs {
		if first == "" || ch < first {
			first = ch
		}
	}
	return first
}

// answered takes the oldest unread command, which a confirmation of kind
// ("subscribe" or "unsubscribe") for channel answers. It returns the
// registration a SUBSCRIBE confirmed, nil if it is gone or the command was
// an UNSUBSCRIBE, and false if the reply does not answer that command (the
// replies are out of step with what the bus sent, so the connection must be
// replaced).
func (b *Bus) answered(kind, channel string) (*reg, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.unread) == 0 {
		return nil, false
	}
	c := b.unread[0]
	b.unread = b.unread[1:]
	want := "unsubscribe"
	if c.r != nil {
		want = "subscribe"
	}
	if c.channel != channel || kind != want {
		return nil, false
	}
	if c.r != nil && c.r == b.probe {
		c.r.confirmed.Store(true)
		return nil, true
	}
	if c.r == nil || b.regs[channel] != c.r {
		return nil, true
	}
	c.r.refusal, c.r.retryAt, c.r.backoff = nil, 0, 0
	c.r.confirmed.Store(true)
	return c.r, true
}

// refused takes the oldest unread command, which Redis refused with err.
// A refused SUBSCRIBE leaves its channel unconfirmed (its cache keeps
// serving L1 only within StaleBound) and is retried after a backoff; the
// first refusal since the channel was last confirmed is reported to the
// cache's observer as an L1 drop with reason "subscribe_refused". A refused
// UNSUBSCRIBE is ignored: the channel has no registration any more. It
// returns false if no command was waiting for a reply.
func (b *Bus) refused(err error, now int64) bool {
	b.mu.Lock()
	if len(b.unread) == 0 {
		b.mu.Unlock()
		return false
	}
	c := b.unread[0]
	b.unread = b.unread[1:]
	r := c.r
	if r != nil && r == b.probe {
		// An ACL that does not grant it: go without (see [Bus.checkProbe]).
		b.probeOff.Store(true)
		b.mu.Unlock()
		return true
	}
	if r == nil || b.regs[c.channel] != r {
		// An UNSUBSCRIBE, or a channel no longer registered.
		b.mu.Unlock()
		return true
	}
	b.subscribeErrors.Add(1)
	first := r.refusal == nil
	r.refusal = fmt.Errorf("%w: %s: %w", ErrSubscribeRefused, r.channel, err)
	d := max(r.backoff, minBackoff)
	r.retryAt, r.backoff = now+int64(d), min(2*d, maxBackoff)
	b.mu.Unlock()
	if first {
		r.sink.Untrust(now, "subscribe_refused")
	}
	return true
}

// retry subscribes again the refused channels whose backoff has passed. It
// returns when the next retry is due (unix nanos), or 0 if none is waiting.
func (b *Bus) retry(ctx context.Context) (next int64) {
	now := time.Now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.regs {
		switch {
		case r.retryAt == 0:
		case r.retryAt <= now:
			r.retryAt = 0
			if b.writeLocked(ctx, r, r.channel) != nil {
				return 0 // ps is closed: the next receive fails
			}
		case next == 0 || r.retryAt < next:
			next = r.retryAt
		}
	}
	return next
}
