package invalidate

// DropOnSend makes the bus skip, without an error, every data message for
// which drop returns true, as if it had been lost between the bus and its
// subscribers. Call it before Run.
func DropOnSend(b *Bus, drop func(channel string, seq uint64) bool) {
	b.dropOnSend = drop
}

// IsData reports whether payload, as published on a channel, is a data
// message (an invalidation), not a heartbeat, ack or leave message.
func IsData(payload string) bool {
	m, err := decode([]byte(payload))
	return err == nil && m.kind == kindInvalidate
}
