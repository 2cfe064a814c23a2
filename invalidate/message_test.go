package invalidate

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMessage_RoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    message
	}{
		{name: "keys and tags", m: message{kind: kindInvalidate, origin: "a1", seq: 7, at: 123456789, keys: []string{"user:1", "a\r\nb", ""}, tags: []string{"expert:42"}}},
		{name: "heartbeat", m: message{kind: kindHeartbeat, origin: "b2", seq: 1 << 40, at: -1}},
		{name: "ack request", m: message{kind: kindAckRequest, origin: "c3", seq: 5, at: 1, req: 1 << 50}},
		{name: "ack", m: message{kind: kindAck, origin: "d4", seq: 2, at: 1, to: "c3", req: 9}},
		{name: "leave", m: message{kind: kindLeave, origin: "e5", seq: 3, at: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(tt.m.encode())
			require.NoError(t, err)
			require.Equal(t, tt.m, got)
		})
	}
}

func TestMessage_DecodeRejects(t *testing.T) {
	t.Parallel()
	valid := (&message{kind: kindInvalidate, origin: "o", seq: 1, keys: []string{"k"}}).encode()
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "empty", b: nil},
		{name: "no magic", b: []byte("XX\x01\x01")},
		{name: "future version", b: []byte("TI\x02\x01")},
		{name: "unknown kind", b: []byte("TI\x01\x09")},
		{name: "truncated", b: valid[:len(valid)-1]},
		{name: "trailing", b: append(bytes.Clone(valid), 0)},
		{name: "huge key count", b: append([]byte("TI\x01\x01\x01o\x01\x00\x00\x00\x00\x00\x00\x00\x00"), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{name: "empty origin", b: (&message{kind: kindHeartbeat}).encode()},
		{name: "ack to nobody", b: (&message{kind: kindAck, origin: "o", req: 1}).encode()},
		{name: "truncated ack", b: (&message{kind: kindAck, origin: "o", to: "p", req: 300}).encode()[:18]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(tt.b)
			require.ErrorIs(t, err, ErrBadMessage)
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add((&message{kind: kindInvalidate, origin: "o", seq: 1, keys: []string{"k"}, tags: []string{"t"}}).encode())
	f.Add((&message{kind: kindHeartbeat, origin: "o", seq: 9}).encode())
	f.Add((&message{kind: kindAckRequest, origin: "o", seq: 9, req: 3}).encode())
	f.Add((&message{kind: kindAck, origin: "o", seq: 9, to: "p", req: 3}).encode())
	f.Add([]byte("TI\x01\x01\x01o\x01\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\x0f"))
	f.Add([]byte("\xdd\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip (varints may have had a
		// non-canonical form, so compare messages, not bytes).
		again, err := decode(m.encode())
		require.NoError(t, err)
		require.Equal(t, m, again)
	})
}
