// subscribe.go holds the subscription: one SUBSCRIBE per channel, confirmations, refusals and the read loop.

package invalidate

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// receive runs one subscription until it fails or goes silent; it reports
// whether any of its channels was confirmed. Each channel is confirmed or
// refused on its own; a refused one is retried on the same connection (see
// [Bus.refused]).
func (b *Bus) receive(ctx context.Context) (confirmed bool) {
	b.mu.Lock()
	ps := b.c.Subscribe(ctx) // no channel yet: it connects on first use
	b.ps, b.unread = ps, nil
	for _, r := range b.regs {
		r.retryAt = 0
		if b.writeLocked(ctx, r, r.channel) != nil {
			break // ps is closed: the receive below fails
		}
	}
	b.mu.Unlock()
	b.lastHeard.Store(time.Now().UnixNano()) // a grace period for the new connection
	defer func() {
		b.mu.Lock()
		b.ps, b.unread = nil, nil
		for _, r := range b.regs {
			r.confirmed.Store(false)
			r.sink.LimitAge(b.o.StaleBound, "bus_down")
		}
		b.mu.Unlock()
		_ = ps.Close()
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
				// Redis refused a command; the connection works.
				b.lastHeard.Store(now)
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
				r.confirmed.Store(true)
				clear(r.seen)
				// Anything may have been missed before this point.
				r.sink.Untrust(now, "subscribed")
				r.sink.LimitAge(0, "")
			}
		case *redis.Message:
			if r := b.lookup(m.Channel); r != nil {
				b.handle(r, m.Payload, now)
			}
		}
	}
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
	if c.r == nil || b.regs[channel] != c.r {
		return nil, true
	}
	c.r.refusal, c.r.retryAt, c.r.backoff = nil, 0, 0
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
	if r == nil || b.regs[c.channel] != r {
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
