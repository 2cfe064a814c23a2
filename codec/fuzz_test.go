package codec

import (
	"bytes"
	"runtime/metrics"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// fuzzSeeds returns valid encodings, hostile payloads and envelopes around
// them. Each is a seed of both fuzz targets.
func fuzzSeeds(t testing.TB) [][]byte {
	p := testProfile()
	seeds := [][]byte{
		{},
		nested(MaxDepth),
		nested(MaxDepth + 1),
		{0x82, 0xa1, 'M', 0xd7, 0x05, 0xc0, 0xa1, 'S', 0xdb, 0x00, 0x10, 0x00, 0x00, 0xa1, 'S', 0xa0},
		{0x92, 0xc7, 0x00, 0x05, 0x80},
	}
	for _, in := range hostileInputs {
		seeds = append(seeds, in.data, envelope(0, 1, 0, in.data))
	}
	for _, tm := range ambiguousTimes {
		b, err := msgpack.Marshal(map[string]any{"t": tm})
		require.NoError(t, err)
		seeds = append(seeds, b)
	}
	for _, v := range []any{p, []string{"a", "bc"}, map[string]any{"k": []any{1, "x", nil, 2.5}}} {
		for _, c := range []Codec{Msgpack(), JSON()} {
			raw, err := c.Marshal(v)
			require.NoError(t, err)
			seeds = append(seeds, raw)
			for _, compressAbove := range []int{0, 1} {
				seeds = append(seeds, mustEncode(t, c, Header{Created: 1, SoftExpiry: 2, Deadline: 3}, v, compressAbove))
			}
		}
	}
	seeds = append(seeds, mustEncode(t, Msgpack(), Header{Flags: FlagNegative}, nil, 0))
	return seeds
}

// heapAllocs returns the bytes allocated by the process so far. Unlike
// runtime.ReadMemStats, it does not stop the world.
func heapAllocs(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	targets := []func() any{
		func() any { return new(Profile) },
		func() any { return new([]string) },
		func() any { return new(map[string]any) },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The bytes as they come, and as the payload of a valid header, plain
		// and compressed, so that the fuzzer need not find the header.
		inputs := [][]byte{data}
		for _, c := range []Codec{Msgpack(), JSON()} {
			inputs = append(inputs, envelope(0, c.ID(), 0, data), envelope(FlagCompressed, c.ID(), 0, data))
		}
		// Decoding may amplify its input (an array of n nils becomes n
		// zero values) but never by more than this.
		limit := uint64(64<<20 + 4096*len(data))
		for _, in := range inputs {
			for _, c := range []Codec{Msgpack(), JSON()} {
				for _, newTarget := range targets {
					v := newTarget()
					before := heapAllocs(sample)
					_, err := Decode(c, in, 0, 1<<20, v)
					if n := heapAllocs(sample) - before; n > limit {
						t.Fatalf("Decode(%s) into %T allocated %d bytes for %d input bytes", c.Name(), v, n, len(in))
					}
					if err != nil {
						require.ErrorIs(t, err, ErrCorrupt)
					}
				}
			}
		}
	})
}

func FuzzValidate(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		stops, err := validateBytes(data)

		// msgpack's own Skip walks the stream the way the validator does.
		r := bytes.NewReader(data)
		dec := msgpack.NewDecoder(r)
		skipErr := dec.Skip()
		libOK := skipErr == nil && r.Len() == 0

		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			if libOK {
				// Only our extra rules refuse what msgpack can walk.
				require.Regexp(t, `nesting deeper|empty extension followed`, err.Error())
			}
			return
		}
		require.True(t, libOK, "validator accepted what msgpack cannot skip: %v, %d bytes left", skipErr, r.Len())
		for i, s := range stops {
			require.True(t, mapOrNil(data[s]))
			if i > 0 {
				require.Greater(t, s, stops[i-1])
			}
		}

		var v any
		if err := Msgpack().Unmarshal(data, &v); err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
		}
	})
}
