// heartbeat.go holds the heartbeats and the age limit while a channel is not known to work.

package invalidate

import (
	"context"
	"time"
)

// tick publishes heartbeats and, while a channel is not known to work,
// keeps its cache from serving entries older than StaleBound.
func (b *Bus) tick(ctx context.Context) {
	interval := min(b.o.Heartbeat, max(b.o.StaleBound/4, time.Millisecond))
	t := time.NewTicker(interval)
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
