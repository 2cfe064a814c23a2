package codec

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"
)

// envelope builds envelope bytes by hand, whatever the payload.
func envelope(flags Flags, codecID byte, schema uint32, payload []byte) []byte {
	out := make([]byte, HeaderSize+len(payload))
	putHeader(out, Header{Flags: flags, Codec: codecID, Schema: schema, Created: 1, SoftExpiry: 2, Deadline: 3})
	copy(out[HeaderSize:], payload)
	return out
}

func mustEncode(t testing.TB, c Codec, h Header, v any, compressAbove int) []byte {
	t.Helper()
	b, err := Encode(c, h, v, compressAbove)
	require.NoError(t, err)
	return b
}

func TestCodec_IDAndName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		codec Codec
		id    byte
		name  string
	}{
		{Msgpack(), 1, "msgpack"},
		{JSON(), 2, "json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.id, tt.codec.ID())
			require.Equal(t, tt.name, tt.codec.Name())
		})
	}
}

func TestCodec_RoundTrip(t *testing.T) {
	t.Parallel()
	want := testProfile()
	h := Header{
		Flags:      FlagCompressed, // ignored: Encode decides
		Codec:      99,             // ignored: Encode writes c.ID()
		Schema:     7,
		Created:    1_700_000_000_000_000_000,
		SoftExpiry: 1_700_000_060_000_000_000,
		Deadline:   -1, // any int64 survives
	}
	tests := []struct {
		name           string
		codec          Codec
		compressAbove  int
		wantCompressed bool
	}{
		{"codec=msgpack,compress=off", Msgpack(), 0, false},
		{"codec=msgpack,compress=on", Msgpack(), 64, true},
		{"codec=msgpack,compress=above-size", Msgpack(), 1 << 20, false},
		{"codec=json,compress=off", JSON(), 0, false},
		{"codec=json,compress=on", JSON(), 64, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := mustEncode(t, tt.codec, h, want, tt.compressAbove)

			ph, payload, err := Parse(data)
			require.NoError(t, err)
			wantHeader := h
			wantHeader.Codec = tt.codec.ID()
			wantHeader.Flags = 0
			if tt.wantCompressed {
				wantHeader.Flags = FlagCompressed
			}
			require.Equal(t, wantHeader, ph)
			require.Len(t, payload, len(data)-HeaderSize)
			if !tt.wantCompressed {
				var direct Profile
				require.NoError(t, tt.codec.Unmarshal(payload, &direct))
				require.Equal(t, want, direct.utc())
			}

			var got Profile
			dh, err := Decode(tt.codec, data, 7, 0, &got)
			require.NoError(t, err)
			require.Equal(t, wantHeader, dh)
			require.Equal(t, want, got.utc())
		})
	}
}

func TestEncode_Negative(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{Msgpack(), JSON()} {
		t.Run("codec="+c.Name(), func(t *testing.T) {
			t.Parallel()
			h := Header{Flags: FlagNegative, Schema: 3, Created: 10, SoftExpiry: 20, Deadline: 30}
			data := mustEncode(t, c, h, "ignored", 1)
			require.Len(t, data, HeaderSize)

			got := Profile{Name: "untouched"}
			dh, err := Decode(c, data, 3, 0, &got)
			require.NoError(t, err)
			h.Codec = c.ID()
			require.Equal(t, h, dh)
			require.Equal(t, Profile{Name: "untouched"}, got)
		})
	}
}

func TestEncode_Incompressible(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 100_000) // beyond maxPooledBuffer once compressed
	for i := range noise {
		noise[i] = byte(rnd.Uint32())
	}
	data := mustEncode(t, Msgpack(), Header{}, noise, 16)
	h, _, err := Parse(data)
	require.NoError(t, err)
	require.Zero(t, h.Flags&FlagCompressed, "compression kept although it did not help")

	var got []byte
	_, err = Decode(Msgpack(), data, 0, 0, &got)
	require.NoError(t, err)
	require.Equal(t, noise, got)
}

// failCodec is a user codec whose Marshal fails and whose Unmarshal panics.
type failCodec struct{}

func (failCodec) ID() byte                           { return 200 }
func (failCodec) Name() string                       { return "fail" }
func (failCodec) Marshal(any) ([]byte, error)        { return nil, errors.New("boom") }
func (failCodec) Unmarshal(data []byte, _ any) error { panic("unmarshal " + string(data)) }

func TestEncode_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		codec   Codec
		h       Header
		v       any
		wantMsg string
	}{
		{"nil codec", nil, Header{}, 1, "codec: Encode with a nil Codec"},
		{"unknown flag", Msgpack(), Header{Flags: 1 << 5}, 1, "codec: unknown flags 0x20"},
		{"msgpack unsupported type", Msgpack(), Header{}, make(chan int), "codec: msgpack: Encode(unsupported chan int)"},
		{"json unsupported type", JSON(), Header{}, make(chan int), "codec: json: unsupported type: chan int"},
		{"user codec", failCodec{}, Header{}, 1, "codec: fail marshal int: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := Encode(tt.codec, tt.h, tt.v, 0)
			require.EqualError(t, err, tt.wantMsg)
			require.Nil(t, b)
		})
	}
}

func TestMsgpack_Marshal(t *testing.T) {
	t.Parallel()
	// Neither msgpack.Marshal nor our Marshal sorts map keys, so maps with
	// more than one key encode in random order: keep one key per map here.
	p := testProfile()
	p.Languages = map[string]int{"en": 5}
	tests := []struct {
		name string
		v    any
	}{
		{"profile", p},
		{"profile pointer", &p},
		{"profiles", []Profile{p, {}}},
		{"nil", nil},
		{"string", "héllo"},
		{"map", map[string]any{"a": []any{true, nil, 2.5, -1, uint64(1) << 63}}},
		{"large bytes", make([]byte, 100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, err := msgpack.Marshal(tt.v)
			require.NoError(t, err)
			got, err := Msgpack().Marshal(tt.v)
			require.NoError(t, err)
			require.Equal(t, want, got, "output differs from msgpack.Marshal")
		})
	}
}

func TestMsgpack_Unmarshal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    []byte
		v       any
		wantMsg string
	}{
		{"type mismatch", []byte{0xa1, 'x'}, new(int), "codec: corrupt value: unmarshal: msgpack: invalid code=a1 decoding int64"},
		{"non-pointer", []byte{0x01}, 0, "codec: corrupt value: unmarshal: msgpack: Decode(non-pointer int)"},
		{"validator", []byte{0xc1}, new(any), "codec: corrupt value: msgpack: reserved byte 0xc1 at offset 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Msgpack().Unmarshal(tt.data, tt.v)
			require.EqualError(t, err, tt.wantMsg)
			require.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

// panicky panics when msgpack asks it to decode itself.
type panicky struct{}

func (panicky) DecodeMsgpack(*msgpack.Decoder) error { panic("boom") }

func TestMsgpack_Unmarshal_RecoversPanic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    []byte
		wantMsg string
	}{
		// msgpack v5.4.1 itself panics on nil for a struct-typed field whose
		// type implements msgpack.CustomDecoder.
		{"library", []byte{0x81, 0xa1, 'P', 0xc0}, "codec: corrupt value: msgpack decoder panicked: reflect: call of reflect.Value.IsNil on struct Value"},
		{"custom decoder", []byte{0x81, 0xa1, 'P', 0x01}, "codec: corrupt value: msgpack decoder panicked: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var v struct{ P panicky }
			var err error
			require.NotPanics(t, func() { err = Msgpack().Unmarshal(tt.data, &v) })
			require.ErrorIs(t, err, ErrCorrupt)
			require.EqualError(t, err, tt.wantMsg)

			// The decoder was not returned to the pool broken.
			var n int
			require.NoError(t, Msgpack().Unmarshal([]byte{0x07}, &n))
			require.Equal(t, 7, n)
		})
	}
}

func TestMsgpack_Unmarshal_StartsNoGoroutine(t *testing.T) {
	// Not parallel: goleak looks at every goroutine of the process.
	ignore := goleak.IgnoreCurrent()
	var m map[string]int
	type withPtr struct {
		P *Session
		M map[int64]*Session
	}
	var w withPtr
	require.NoError(t, Msgpack().Unmarshal([]byte{0x81, 0xa1, 'a', 0x01}, &m))
	data, err := msgpack.Marshal(withPtr{P: &Session{}, M: map[int64]*Session{1: {}}})
	require.NoError(t, err)
	require.NoError(t, Msgpack().Unmarshal(data, &w))
	goleak.VerifyNone(t, ignore)
}

func TestJSON_Unmarshal(t *testing.T) {
	t.Parallel()
	var p Profile
	err := JSON().Unmarshal([]byte(`{"id":"x"}`), &p)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "codec: corrupt value: unmarshal: json: cannot unmarshal")
}

func TestDecodeError_Error(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     *DecodeError
		wantMsg string
		wantIs  []error
	}{
		{"reason only", &DecodeError{Reason: "bad magic"}, "codec: corrupt value: bad magic", []error{ErrCorrupt}},
		{"sentinel", &DecodeError{Reason: "schema 1, want 2", Err: ErrSchemaMismatch},
			"codec: corrupt value: schema 1, want 2: schema mismatch", []error{ErrCorrupt, ErrSchemaMismatch}},
		{"foreign cause", &DecodeError{Reason: "inflate", Err: errors.New("unexpected EOF")},
			"codec: corrupt value: inflate: unexpected EOF", []error{ErrCorrupt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.EqualError(t, tt.err, tt.wantMsg)
			for _, target := range tt.wantIs {
				require.ErrorIs(t, tt.err, target)
			}
			require.NotErrorIs(t, tt.err, ErrTooLarge)
			require.Equal(t, tt.err.Err, errors.Unwrap(tt.err))
		})
	}
}
