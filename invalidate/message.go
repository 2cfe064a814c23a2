// message.go holds the wire format of a message: encode and decode.

package invalidate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message kinds.
const (
	kindInvalidate byte = 1
	kindHeartbeat  byte = 2
	// kindAckRequest is a heartbeat that asks every instance that hears it
	// to answer with a kindAck once it has applied what the origin sent
	// before it (see ack.go). It carries a request number.
	kindAckRequest byte = 3
	// kindAck answers a kindAckRequest: it names the requester and its
	// request number, and is otherwise a heartbeat of its own origin.
	kindAck byte = 4
	// kindLeave is the last heartbeat of an instance whose Run ends: the
	// others stop counting it as live at once.
	kindLeave byte = 5
)

const (
	magic0, magic1 = 'T', 'I'
	version        = 1
	maxOriginLen   = 64
)

// ErrBadMessage is matched by the error of every message that does not
// decode.
var ErrBadMessage = errors.New("invalidate: bad message")

// message is one pub/sub payload.
type message struct {
	kind   byte
	origin string
	seq    uint64 // data: this message's number; heartbeat: the last data number sent
	at     int64  // unix nanos, the sender's clock
	keys   []string
	tags   []string
	to     string // kindAck: the instance whose request it answers
	req    uint64 // kindAckRequest, kindAck: the request number
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encode returns the wire form of m.
func (m *message) encode() []byte {
	n := 4 + len(m.origin) + len(m.to) + 5*binary.MaxVarintLen64 + 8
	for _, k := range m.keys {
		n += len(k) + binary.MaxVarintLen32
	}
	for _, t := range m.tags {
		n += len(t) + binary.MaxVarintLen32
	}
	b := make([]byte, 0, n)
	b = append(b, magic0, magic1, version, m.kind)
	b = appendString(b, m.origin)
	b = binary.AppendUvarint(b, m.seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.at))
	switch m.kind {
	case kindAck:
		b = appendString(b, m.to)
		b = binary.AppendUvarint(b, m.req)
	case kindAckRequest:
		b = binary.AppendUvarint(b, m.req)
	}
	b = binary.AppendUvarint(b, uint64(len(m.keys)))
	for _, k := range m.keys {
		b = appendString(b, k)
	}
	b = binary.AppendUvarint(b, uint64(len(m.tags)))
	for _, t := range m.tags {
		b = appendString(b, t)
	}
	return b
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrBadMessage, what)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string(what string, limit int) string {
	n := r.uvarint(what)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) || n > uint64(limit) {
		r.fail(what + " length")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// strings reads a counted list; every element takes at least one byte, so
// a count larger than what is left is refused before any allocation.
func (r *reader) strings(what string) []string {
	n := r.uvarint(what)
	if r.err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(what + " count")
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, r.string(what, len(r.b)))
		if r.err != nil {
			return nil
		}
	}
	return out
}

// decode parses a wire message. It never panics and allocates at most a
// small multiple of len(b).
func decode(b []byte) (message, error) {
	var m message
	if len(b) < 4 || b[0] != magic0 || b[1] != magic1 {
		return m, fmt.Errorf("%w: no magic", ErrBadMessage)
	}
	if b[2] != version {
		return m, fmt.Errorf("%w: version %d", ErrBadMessage, b[2])
	}
	m.kind = b[3]
	if m.kind < kindInvalidate || m.kind > kindLeave {
		return m, fmt.Errorf("%w: kind %d", ErrBadMessage, m.kind)
	}
	r := reader{b: b[4:]}
	m.origin = r.string("origin", maxOriginLen)
	m.seq = r.uvarint("seq")
	if r.err == nil {
		if len(r.b) < 8 {
			r.fail("time")
		} else {
			m.at = int64(binary.LittleEndian.Uint64(r.b))
			r.b = r.b[8:]
		}
	}
	switch m.kind {
	case kindAck:
		m.to = r.string("to", maxOriginLen)
		m.req = r.uvarint("req")
		if r.err == nil && m.to == "" {
			r.fail("empty to")
		}
	case kindAckRequest:
		m.req = r.uvarint("req")
	}
	m.keys = r.strings("keys")
	m.tags = r.strings("tags")
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err == nil && m.origin == "" {
		r.fail("empty origin")
	}
	return m, r.err
}
