// receive.go holds what a message from another instance does to this instance's caches.

package invalidate

// lookup returns the registration of channel ch, or nil.
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
	b.sequence(r, &m, now)
	if m.kind != kindInvalidate {
		return
	}
	b.received.Add(1)
	if len(m.keys) > 0 {
		r.sink.DropKeys(m.keys)
		b.keysDropped.Add(uint64(len(m.keys)))
	}
	if len(m.tags) > 0 {
		r.sink.DropTags(m.tags, m.at)
	}
}
