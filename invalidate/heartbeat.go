// heartbeat.go holds heartbeats, sequence gaps, and the age limit while a channel is not known to work.

package invalidate

import (
	"context"
	"time"
)

// tick publishes heartbeats and, while a channel is not known to work,
// keeps its cache from serving entries older than StaleBound.
func (b *Bus) tick(ctx context.Context) {
	t := time.NewTicker(b.tickInterval())
	defer t.Stop()
	lastBeat := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		silent := now.UnixNano()-b.lastHeard.Load() > int64(b.o.DeadAfter)
		if b.topo.troubled() {
			// Until the slot map names live masters again (it names a
			// dead one until it is reloaded).
			b.topo.reload()
		}
		b.mu.Lock()
		regs := make([]*reg, 0, len(b.regs))
		for _, r := range b.regs {
			regs = append(regs, r)
		}
		b.mu.Unlock()
		// Nothing here may block. (Replacing a silent subscription is the
		// receiver's job: closing it here could wait on go-redis's locks
		// for as long as it is stuck.) The age limit is checked by the
		// cache at each read, so it holds however late this loop runs.
		for _, r := range regs {
			switch {
			case r.joining.Load():
				// No L1 at all until this bus hears itself (see join).
			case silent || !r.confirmed.Load():
				r.sink.LimitAge(b.o.StaleBound, "bus_down")
			case r.silenced.Load():
				// Heard again on a confirmed subscription after a silence:
				// what was sent meanwhile may be lost.
				r.sink.Untrust(now.UnixNano(), "bus_silence_over")
				r.sink.LimitAge(0, "")
			}
			r.silenced.Store(silent)
		}
		if now.Sub(lastBeat) >= b.o.Heartbeat {
			lastBeat = now
			for _, r := range regs {
				select {
				case b.reqs <- &pubReq{r: r, heartbeat: true}:
				default: // the sender is backed up; it is busy publishing anyway
				}
			}
		}
	}
}

// tickInterval is how often the heartbeat loop runs.
func (b *Bus) tickInterval() time.Duration {
	return min(b.o.Heartbeat, max(b.o.StaleBound/4, time.Millisecond))
}

// origin is what the receiver knows of another instance on one channel.
type origin struct {
	seq   uint64 // the last data message's number
	heard int64  // unix nanos
}

// sequence checks m, from another instance on r's channel, against that
// origin's sequence numbers. A data message must carry the number after
// the last one; a heartbeat carries the last one sent. Anything else means
// messages were lost (or the origin restarted its numbering): the gap is
// counted and the cache stops trusting its L1 (reason "sequence_gap").
// Receiver goroutine only.
func (b *Bus) sequence(r *reg, m *message, now int64) {
	o, known := r.seen[m.origin]
	if !known {
		// First contact: the subscription's confirmation dropped L1, so
		// what this origin sent before is covered.
		o = &origin{seq: m.seq, heard: now} // heard before prune, which would take it for dead
		if m.kind == kindInvalidate {
			o.seq = m.seq - 1
		}
		r.seen[m.origin] = o
		b.prune(r, now)
	}
	o.heard = now
	want := o.seq // a heartbeat
	if m.kind == kindInvalidate {
		want = o.seq + 1
	}
	if m.seq != want {
		r.sink.Untrust(now, "sequence_gap")
		b.gaps.Add(1) // counted once applied (see Stats)
	}
	o.seq = m.seq
}

// prune forgets origins not heard from for a long time (instances that
// went away), so r.seen does not grow without bound.
func (b *Bus) prune(r *reg, now int64) {
	if len(r.seen) < 64 {
		return
	}
	for id, o := range r.seen {
		if now-o.heard > 10*int64(b.o.DeadAfter) {
			delete(r.seen, id)
		}
	}
}
