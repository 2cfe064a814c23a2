package codec

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// validateBytes runs a fresh validator over data.
func validateBytes(data []byte) ([]int, error) {
	var v validator
	err := v.validate(data)
	return v.stops, err
}

func nested(depth int) []byte {
	b := bytes.Repeat([]byte{0x91}, depth) // fixarray of one element
	return append(b, 0xc0)
}

func TestValidateMsgpack(t *testing.T) {
	t.Parallel()
	profile, err := msgpack.Marshal(testProfile())
	require.NoError(t, err)
	withTime, err := msgpack.Marshal(map[string]any{"t": testProfile().CreatedAt, "f": 1.5, "i": -1 << 40, "u": uint64(1) << 63})
	require.NoError(t, err)
	str16, err := msgpack.Marshal(strings.Repeat("x", 300))
	require.NoError(t, err)
	bin32, err := msgpack.Marshal(make([]byte, 70_000))
	require.NoError(t, err)

	tests := []struct {
		name    string
		data    []byte
		wantMsg string // empty: valid
	}{
		{name: "positive fixint", data: []byte{0x7f}},
		{name: "negative fixint", data: []byte{0xe0}},
		{name: "nil", data: []byte{0xc0}},
		{name: "empty array", data: []byte{0x90}},
		{name: "empty map32", data: []byte{0xdf, 0, 0, 0, 0}},
		{name: "fixext1", data: []byte{0xd4, 0x01, 0x00}},
		{name: "ext8", data: []byte{0xc7, 0x02, 0x05, 'a', 'b'}},
		{name: "profile", data: profile},
		{name: "time and numbers", data: withTime},
		{name: "str16", data: str16},
		{name: "bin32", data: bin32},
		{name: "max depth", data: nested(MaxDepth)},

		{name: "empty", data: nil, wantMsg: "msgpack: empty input"},
		{name: "reserved c1", data: []byte{0x91, 0xc1}, wantMsg: "msgpack: reserved byte 0xc1 at offset 1"},
		{name: "trailing", data: []byte{0x01, 0x02}, wantMsg: "msgpack: trailing bytes after the value at offset 1"},
		{name: "missing element", data: []byte{0x92, 0x01}, wantMsg: "msgpack: value 0x92 at offset 0 declares 2, but 1 bytes remain"},
		{name: "missing element after string", data: []byte{0x92, 0xa1, 'x'}, wantMsg: "msgpack: unexpected end of input at offset 3"},
		{name: "truncated int", data: []byte{0xcd, 0x01}, wantMsg: "msgpack: value 0xcd at offset 0 declares 2, but 1 bytes remain"},
		{name: "truncated length", data: []byte{0xda, 0x01}, wantMsg: "msgpack: truncated length at offset 0"},
		{name: "truncated fixext", data: []byte{0xd8, 0x01, 0x00}, wantMsg: "msgpack: value 0xd8 at offset 0 declares 17, but 2 bytes remain"},
		{name: "ext32 without type", data: []byte{0xc9, 0, 0, 0, 0}, wantMsg: "msgpack: value 0xc9 at offset 0 declares 1, but 0 bytes remain"},
		{name: "array32 huge", data: []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, wantMsg: "msgpack: value 0xdd at offset 0 declares 4294967295, but 0 bytes remain"},
		{name: "map32 huge", data: []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, wantMsg: "msgpack: value 0xdf at offset 0 declares 8589934590, but 0 bytes remain"},
		{name: "map needs two per entry", data: []byte{0x82, 0x01, 0x02, 0x03}, wantMsg: "msgpack: value 0x82 at offset 0 declares 4, but 3 bytes remain"},
		{name: "str32 huge", data: []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, wantMsg: "msgpack: value 0xdb at offset 0 declares 4294967295, but 0 bytes remain"},
		{name: "bin32 huge", data: []byte{0xc6, 0xff, 0xff, 0xff, 0xff}, wantMsg: "msgpack: value 0xc6 at offset 0 declares 4294967295, but 0 bytes remain"},
		{name: "ext32 huge", data: []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, wantMsg: "msgpack: value 0xc9 at offset 0 declares 4294967296, but 1 bytes remain"},
		{name: "nested array32 huge", data: []byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff}, wantMsg: "msgpack: value 0xdd at offset 1 declares 4294967295, but 0 bytes remain"},
		// Each of the 10 elements fits alone, but not all that are owed.
		{name: "owed by outer containers", data: []byte{0x92, 0x9a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, wantMsg: "msgpack: value 0x9a at offset 1 declares 10, but 10 bytes remain"},
		{name: "too deep", data: nested(MaxDepth + 1), wantMsg: "msgpack: nesting deeper than 512 at offset 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := validateBytes(tt.data)
			if tt.wantMsg == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrCorrupt)
			require.EqualError(t, err, "codec: corrupt value: "+tt.wantMsg)
		})
	}
}

func TestValidateMsgpack_Allocs(t *testing.T) {
	// Not parallel: testing.AllocsPerRun refuses to run in a parallel test.
	data, err := msgpack.Marshal([]Profile{testProfile(), testProfile()})
	require.NoError(t, err)
	deep := nested(MaxDepth)
	v := new(validator)
	allocs := testing.AllocsPerRun(100, func() {
		if err := v.validate(data); err != nil {
			panic(err)
		}
		if err := v.validate(deep); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestMsgpack_Unmarshal_MaxDepth(t *testing.T) {
	t.Parallel()
	var v any
	require.NoError(t, Msgpack().Unmarshal(nested(MaxDepth), &v))
	err := Msgpack().Unmarshal(nested(MaxDepth+1), &v)
	require.ErrorIs(t, err, ErrCorrupt)
}
