// receive.go holds what a message from another instance does to this instance's caches.

package invalidate

// lookup returns the registration of channel ch, or nil.
func (b *Bus) lookup(ch string) *reg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.regs[ch]
}

// handle applies one message received on r's channel. It reports whether
// the message was this bus's own.
func (b *Bus) handle(r *reg, payload string, now int64) (own bool) {
	m, err := decode([]byte(payload))
	if err != nil {
		b.bad.Add(1)
		return false
	}
	if m.origin == b.o.InstanceID {
		// Our own message: it proves the subscription works, and an ack
		// request that everything before it was heard.
		if m.kind == kindAckRequest {
			b.echoed(m.req)
		}
		return true
	}
	r.peers.saw(m.origin, now, 10*b.o.DeadAfter)
	b.sequence(r, &m, now)
	switch m.kind {
	case kindAckRequest:
		// Everything m.origin published here before it has been applied
		// (or found missing, which dropped L1): acknowledge.
		b.owe(r, &m)
		return false
	case kindAck:
		if m.to == b.o.InstanceID {
			b.acked(m.req, m.origin)
		}
		return false
	case kindLeave:
		r.peers.gone(m.origin)
		b.left(m.origin)
		return false
	case kindHeartbeat:
		return false
	}
	// Applied first, counted after (see Stats): whoever sees Received
	// move sees the sink without the message's keys and tags.
	if len(m.keys) > 0 {
		r.sink.DropKeys(m.keys)
		b.keysDropped.Add(uint64(len(m.keys)))
	}
	if len(m.tags) > 0 {
		r.sink.DropTags(m.tags, m.at)
	}
	b.received.Add(1)
	return false
}
