package codec

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func flateBytes(t testing.TB, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(p)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestParse(t *testing.T) {
	t.Parallel()
	data := envelope(FlagCompressed, 200, 0xdeadbeef, []byte("payload"))
	h, payload, err := Parse(data)
	require.NoError(t, err)
	require.Equal(t, Header{Flags: FlagCompressed, Codec: 200, Schema: 0xdeadbeef, Created: 1, SoftExpiry: 2, Deadline: 3}, h)
	require.Equal(t, []byte("payload"), payload)
	require.Same(t, &data[HeaderSize], &payload[0], "Parse must not copy")

	// The layout is fixed: little-endian fields at fixed offsets.
	require.Equal(t, []byte{'T', 'C', 1, 2, 200, 0xef, 0xbe, 0xad, 0xde, 1, 0, 0, 0, 0, 0, 0, 0}, data[:17])
}

func TestDecode_BadInput(t *testing.T) {
	t.Parallel()
	p := testProfile()
	good := mustEncode(t, Msgpack(), Header{Schema: 1}, p, 0)
	goodZ := mustEncode(t, Msgpack(), Header{Schema: 1}, p, 1)
	require.NotZero(t, goodZ[3]&byte(FlagCompressed))
	bomb := flateBytes(t, make([]byte, 8<<20)) // 8 MiB of zeros in about 8 KiB
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 512)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}

	tests := []struct {
		name     string
		data     []byte
		codec    Codec
		maxBytes int
		wantIs   []error
	}{
		{name: "nil", data: nil},
		{name: "empty", data: []byte{}},
		{name: "short header", data: good[:HeaderSize-1]},
		{name: "bad magic", data: append([]byte("XC"), good[2:]...)},
		{name: "unknown version", data: append([]byte{'T', 'C', 2}, good[3:]...)},
		{name: "version zero", data: append([]byte{'T', 'C', 0}, good[3:]...)},
		{name: "unknown flag", data: envelope(1<<7, 1, 1, good[HeaderSize:])},
		{name: "negative and compressed", data: envelope(FlagNegative|FlagCompressed, 1, 1, nil)},
		{name: "negative with payload", data: envelope(FlagNegative, 1, 1, []byte{0xc0})},
		{name: "codec mismatch", data: good, codec: JSON(), wantIs: []error{ErrCodecMismatch}},
		{name: "user codec id", data: envelope(0, 200, 1, good[HeaderSize:]), wantIs: []error{ErrCodecMismatch}},
		{name: "schema mismatch", data: envelope(0, 1, 2, good[HeaderSize:]), wantIs: []error{ErrSchemaMismatch}},
		{name: "empty payload", data: envelope(0, 1, 1, nil)},
		{name: "truncated payload", data: good[:len(good)-1]},
		{name: "truncated payload mid-header", data: good[:HeaderSize+1]},
		{name: "trailing garbage", data: append(bytes.Clone(good), 0x00)},
		{name: "wrong type", data: envelope(0, 1, 1, []byte{0xa3, 'a', 'b', 'c'})},
		{name: "bad flate", data: envelope(FlagCompressed, 1, 1, []byte("this is not flate"))},
		{name: "truncated flate", data: goodZ[:len(goodZ)-4]},
		{name: "trailing bytes after flate", data: append(bytes.Clone(goodZ), 0xff)},
		{name: "flate of garbage msgpack", data: envelope(FlagCompressed, 1, 1, flateBytes(t, []byte{0xc1}))},
		{name: "flate bomb beyond maxBytes", data: envelope(FlagCompressed, 1, 1, bomb), maxBytes: 1 << 20, wantIs: []error{ErrTooLarge}},
		{name: "flate just beyond maxBytes", data: envelope(FlagCompressed, 1, 1, flateBytes(t, good[HeaderSize:])), maxBytes: len(good) - HeaderSize - 1, wantIs: []error{ErrTooLarge}},
		{name: "plain beyond maxBytes", data: good, maxBytes: len(good) - HeaderSize - 1, wantIs: []error{ErrTooLarge}},
		{name: "random bytes", data: random},
		{name: "random payload", data: envelope(0, 1, 1, random)},
		{name: "random compressed payload", data: envelope(FlagCompressed, 1, 1, random)},
		{name: "hostile array32", data: envelope(0, 1, 1, []byte{0xdd, 0xff, 0xff, 0xff, 0xff})},
		{name: "json garbage", data: envelope(0, 2, 1, []byte(`{"id":`)), codec: JSON()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.codec
			if c == nil {
				c = Msgpack()
			}
			var got Profile
			var err error
			require.NotPanics(t, func() { _, err = Decode(c, tt.data, 1, tt.maxBytes, &got) })
			require.ErrorIs(t, err, ErrCorrupt)
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			for _, target := range tt.wantIs {
				require.ErrorIs(t, err, target)
			}
		})
	}
}

func TestDecode_MaxBytes(t *testing.T) {
	t.Parallel()
	const size = 10_003 // bin16 header and 10,000 bytes
	tests := []struct {
		name          string
		compressAbove int
		maxBytes      int
		wantErr       bool
	}{
		{"plain,limit=size", 0, size, false},
		{"plain,limit=size-1", 0, size - 1, true},
		{"compressed,limit=size", 1, size, false},
		{"compressed,limit=size-1", 1, size - 1, true},
		{"compressed,limit=1", 1, 1, true},
		{"compressed,limit=default", 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := mustEncode(t, Msgpack(), Header{}, make([]byte, 10_000), tt.compressAbove)
			h, _, err := Parse(data)
			require.NoError(t, err)
			require.Equal(t, tt.compressAbove > 0, h.Flags&FlagCompressed != 0)

			var got []byte
			_, err = Decode(Msgpack(), data, 0, tt.maxBytes, &got)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrTooLarge)
				require.ErrorIs(t, err, ErrCorrupt)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, 10_000)
		})
	}
}

func TestDecode_HeaderOnMismatch(t *testing.T) {
	t.Parallel()
	data := mustEncode(t, JSON(), Header{Schema: 4, Created: 5}, 1, 0)
	h, err := Decode(JSON(), data, 5, 0, new(int))
	require.ErrorIs(t, err, ErrSchemaMismatch)
	require.EqualError(t, err, "codec: corrupt value: schema 4, want 5: schema mismatch")
	require.Equal(t, Header{Codec: 2, Schema: 4, Created: 5}, h)
}

func TestDecode_UserCodecPanics(t *testing.T) {
	t.Parallel()
	data := envelope(0, failCodec{}.ID(), 0, []byte("x"))
	var err error
	require.NotPanics(t, func() { _, err = Decode(failCodec{}, data, 0, 0, new(int)) })
	require.ErrorIs(t, err, ErrCorrupt)
	require.EqualError(t, err, "codec: corrupt value: fail decoder panicked: unmarshal x")
}

func TestDecode_NilCodec(t *testing.T) {
	t.Parallel()
	_, err := Decode(nil, envelope(0, 1, 0, []byte{0}), 0, 0, new(int))
	require.EqualError(t, err, "codec: Decode with a nil Codec")
	require.NotErrorIs(t, err, ErrCorrupt)
}
