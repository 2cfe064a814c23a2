// publish.go holds the sending side: Publish, the one sender goroutine and its group commit.

package invalidate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// pubReq is one Publish (or, with done == nil, one heartbeat) for the
// sender goroutine.
type pubReq struct {
	r          *reg
	keys, tags []string
	heartbeat  bool
	done       chan error
}

// Publish implements tier.Publisher. It returns once the message carrying
// the keys and tags was published (or failed).
func (r *reg) Publish(ctx context.Context, keys, tags []string) error {
	b := r.bus
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	req := &pubReq{r: r, keys: keys, tags: tags, done: make(chan error, 1)}
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return fmt.Errorf("invalidate: publish: %w", context.Cause(ctx))
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("invalidate: publish: %w", context.Cause(ctx))
	}
}

// send is the only goroutine that publishes, so an instance's messages
// (data and heartbeats) reach Redis in sequence order. It batches every
// request that is waiting when it starts a PUBLISH.
func (b *Bus) send(ctx context.Context) {
	for {
		var first *pubReq
		select {
		case <-ctx.Done():
			b.failPending()
			return
		case first = <-b.reqs:
		}
		batch := []*pubReq{first}
		size := len(first.keys) + len(first.tags)
	drain:
		for size < b.o.MaxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
				size += len(r.keys) + len(r.tags)
			default:
				break drain
			}
		}
		b.flush(ctx, batch)
	}
}

// flush publishes one message per channel for the batch, pipelined.
func (b *Bus) flush(ctx context.Context, batch []*pubReq) {
	type out struct {
		m    message
		reqs []*pubReq
	}
	var order []*reg
	data := map[*reg]*out{}
	beats := map[*reg]bool{}
	for _, q := range batch {
		if q.heartbeat {
			beats[q.r] = true
			continue
		}
		o, ok := data[q.r]
		if !ok {
			o = &out{m: message{kind: kindInvalidate, origin: b.o.InstanceID}}
			data[q.r] = o
			order = append(order, q.r)
		}
		o.m.keys = append(o.m.keys, q.keys...)
		o.m.tags = append(o.m.tags, q.tags...)
		o.reqs = append(o.reqs, q)
	}
	now := time.Now().UnixNano()
	// Callers wait with their own deadlines; this one only keeps a stuck
	// connection from holding the sender forever.
	pctx, cancel := context.WithTimeout(ctx, max(b.o.Heartbeat, time.Second))
	defer cancel()
	cmds := map[*reg]*redis.IntCmd{}
	_, err := b.c.Pipelined(pctx, func(p redis.Pipeliner) error {
		for _, r := range order {
			o := data[r]
			r.seq++
			o.m.seq, o.m.at = r.seq, now
			cmds[r] = p.Publish(pctx, r.channel, o.m.encode())
		}
		for r := range beats {
			m := message{kind: kindHeartbeat, origin: b.o.InstanceID, seq: r.seq, at: now}
			p.Publish(pctx, r.channel, m.encode())
		}
		return nil
	})
	for _, r := range order {
		// Err is the first failed command's error. A Redis error reply
		// belongs to its own command (a heartbeat refused on another
		// channel does not fail this one); any other error may have lost
		// them all.
		rerr := err
		var reply redis.Error
		if c := cmds[r]; c != nil && (c.Err() != nil || errors.As(err, &reply)) {
			rerr = c.Err()
		}
		if rerr != nil {
			b.sendErrors.Add(1)
			rerr = fmt.Errorf("invalidate: publish: %w", rerr)
		} else {
			b.sent.Add(1)
		}
		for _, q := range data[r].reqs {
			q.done <- rerr
		}
	}
}

// failPending answers the requests still queued when Run stops.
func (b *Bus) failPending() {
	for {
		select {
		case q := <-b.reqs:
			if q.done != nil {
				q.done <- ErrNotRunning
			}
		default:
			return
		}
	}
}
