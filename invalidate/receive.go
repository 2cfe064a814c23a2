// receive.go holds what a message from another instance does to this instance's caches.

package invalidate

// origin is what the receiver knows of another instance on one channel.
type origin struct {
	seq   uint64
	heard int64
}

func (b *Bus) lookup(ch string) *reg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.regs[ch]
}

// handle applies one message received on r's channel.
func (b *Bus) handle(r *reg, payload string, now int64) {
	m, err := decode([]byte(payload))
	if err != nil {
		b.bad.Add(1)
		return
	}
	if m.origin == b.o.InstanceID {
		return // our own message: it only proves the subscription works
	}
	o, known := r.seen[m.origin]
	if !known {
		// First contact: the subscription's confirmation dropped L1, so
		// what this origin sent before is covered.
		o = &origin{seq: m.seq}
		if m.kind == kindInvalidate {
			o.seq = m.seq - 1
		}
		r.seen[m.origin] = o
		b.prune(r, now)
	}
	o.heard = now
	switch m.kind {
	case kindInvalidate:
		if m.seq != o.seq+1 {
			b.gaps.Add(1)
			r.sink.Untrust(now, "sequence_gap")
		}
		o.seq = m.seq
		b.received.Add(1)
		if len(m.keys) > 0 {
			r.sink.DropKeys(m.keys)
			b.keysDropped.Add(uint64(len(m.keys)))
		}
		if len(m.tags) > 0 {
			r.sink.DropTags(m.tags, m.at)
		}
	case kindHeartbeat:
		if m.seq != o.seq {
			// Data messages we never got (m.seq > o.seq), or an origin that
			// restarted its numbering: either way we cannot vouch for L1.
			b.gaps.Add(1)
			r.sink.Untrust(now, "sequence_gap")
			o.seq = m.seq
		}
	}
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
