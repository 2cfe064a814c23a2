package codec

import (
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// ambiguousTimes encode as msgpack time extensions whose payload starts with
// a map code or nil, which DecodeMapLen would read as a map.
var ambiguousTimes = []time.Time{
	time.Unix(1_700_000_000, 536_870_912).UTC(), // fixext8, payload 0x80...
	time.Unix(1_700_000_000, 600_000_000).UTC(), // fixext8, payload 0x8f...
	time.Unix(1_700_000_000, 805_306_368).UTC(), // fixext8, payload 0xc0...
	time.Unix(1_700_000_000, 935_000_000).UTC(), // fixext8, payload 0xde...
	time.Unix(1_700_000_000, 939_000_000).UTC(), // fixext8, payload 0xdf...
	time.Unix(0x8000_0000, 0).UTC(),             // fixext4, payload 0x80... (2038)
	time.Unix(0xc000_0000, 0).UTC(),             // fixext4, payload 0xc0... (2072)
}

func TestValidateMsgpack_Stops(t *testing.T) {
	t.Parallel()
	for _, tm := range ambiguousTimes {
		b, err := msgpack.Marshal(tm)
		require.NoError(t, err)
		require.True(t, mapOrNil(b[2]), "payload of %v starts with % x", tm, b[2])
		stops, err := validateBytes(b)
		require.NoError(t, err)
		require.Equal(t, []int{2}, stops)
	}

	tests := []struct {
		name      string
		data      []byte
		wantStops []int
		wantMsg   string
	}{
		{name: "plain time", data: []byte{0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00}},
		{name: "ext8 payload", data: []byte{0x92, 0xc7, 0x02, 0x05, 0x81, 0x01, 0xd4, 0x05, 0xc0}, wantStops: []int{4, 8}},
		{name: "empty ext at end", data: []byte{0xc7, 0x00, 0x05}},
		{name: "empty ext then int", data: []byte{0x92, 0xc7, 0x00, 0x05, 0x01}},
		{name: "empty ext then map", data: []byte{0x92, 0xc7, 0x00, 0x05, 0x80},
			wantMsg: "msgpack: empty extension followed by a map or nil at offset 1"},
		{name: "empty ext then nil", data: []byte{0x92, 0xc8, 0x00, 0x00, 0x05, 0xc0},
			wantMsg: "msgpack: empty extension followed by a map or nil at offset 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stops, err := validateBytes(tt.data)
			if tt.wantMsg != "" {
				require.EqualError(t, err, "codec: corrupt value: "+tt.wantMsg)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantStops, stops)
		})
	}
}

func TestMsgpack_Unmarshal_AmbiguousTimes(t *testing.T) {
	t.Parallel()
	type event struct {
		At    time.Time            `msgpack:"at"`
		Times []time.Time          `msgpack:"times"`
		ByKey map[string]time.Time `msgpack:"by_key"`
		Any   any                  `msgpack:"any"`
	}
	for _, tm := range ambiguousTimes {
		want := event{At: tm, Times: []time.Time{tm, tm}, ByKey: map[string]time.Time{"k": tm}, Any: tm}
		data, err := Msgpack().Marshal(want)
		require.NoError(t, err)

		var got event
		require.NoError(t, Msgpack().Unmarshal(data, &got))
		require.True(t, want.At.Equal(got.At))
		require.True(t, want.Times[1].Equal(got.Times[1]))
		require.True(t, want.ByKey["k"].Equal(got.ByKey["k"]))
		require.True(t, tm.Equal(got.Any.(time.Time)))

		// The same bytes where a map is expected are an error, not a map.
		var wrong struct {
			At map[string]any `msgpack:"at"`
		}
		err = Msgpack().Unmarshal(data, &wrong)
		require.ErrorIs(t, err, ErrCorrupt)
	}
}

// TestMsgpack_Unmarshal_ExtReadAsMap covers the one place where msgpack
// v5.4.1 does not read the stream the way the validator walks it: an
// extension where a map is expected. The inputs pass the validator, and
// declare lengths that msgpack.Unmarshal allocates for; at full size
// (4294967295 instead of the 1<<20 used here for the raw library) they
// would exhaust memory.
func TestMsgpack_Unmarshal_ExtReadAsMap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	tests := []struct {
		name     string
		data     []byte
		new      func() any
		rawAlloc uint64 // at least this much for msgpack.Unmarshal
	}{
		{
			// A "time" whose payload is map32 of 1<<20 entries.
			name:     "map32 in a time into *map[string]any",
			data:     []byte{0xd7, 0xff, 0xdf, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00},
			new:      func() any { return new(map[string]any) },
			rawAlloc: 16 << 20,
		},
		{
			// An ext8 whose payload is {"x": array32 of 1<<20 elements}.
			name:     "array32 in an ext into *map[string][]int64",
			data:     []byte{0xc7, 0x09, 0x05, 0x81, 0xa1, 'x', 0xdd, 0x00, 0x10, 0x00, 0x00, 0x00},
			new:      func() any { return new(map[string][]int64) },
			rawAlloc: 8 << 20,
		},
		{
			// Nil read from an ext payload puts the decoder one byte into
			// the payload, where a str32 header waits.
			name: "nil then str32 into *struct{M map[string]int; S string}",
			data: []byte{0x82, 0xa1, 'M', 0xd7, 0x05, 0xc0, 0xa1, 'S', 0xdb, 0x00, 0x10, 0x00, 0x00, 0xa1, 'S', 0xa0},
			new: func() any {
				return new(struct {
					M map[string]int
					S string
				})
			},
			rawAlloc: 1 << 20,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := validateBytes(tt.data)
			require.NoError(t, err, "the structure is valid msgpack")

			var rawErr error
			raw := allocatedBy(func() { rawErr = msgpack.Unmarshal(tt.data, tt.new()) })
			require.Error(t, rawErr)
			require.GreaterOrEqual(t, raw, tt.rawAlloc, "msgpack.Unmarshal no longer misreads the extension?")

			v := tt.new()
			ours := allocatedBy(func() { err = Msgpack().Unmarshal(tt.data, v) })
			require.ErrorIs(t, err, ErrCorrupt)
			require.ErrorContains(t, err, "extension payload read as a map")
			require.Less(t, ours, uint64(64<<10))
			t.Logf("msgpack.Unmarshal allocated %d bytes, Msgpack().Unmarshal %d bytes", raw, ours)
		})
	}
}
