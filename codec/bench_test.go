package codec

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// unmarshalUnvalidated is Msgpack().Unmarshal without the validator and the
// recover: the baseline that shows what validation costs.
func unmarshalUnvalidated(data []byte, v any) error {
	s := decoderPool.Get().(*decoderState)
	s.r.reset(data, nil)
	s.dec.Reset(&s.r)
	err := s.dec.Decode(v)
	s.r.reset(nil, nil)
	decoderPool.Put(s)
	return err
}

func BenchmarkMsgpack_Decode(b *testing.B) {
	p := testProfile()
	data, err := msgpack.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	env := mustEncode(b, Msgpack(), Header{}, p, 0)

	b.Run("impl=codec", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v Profile
			if err := Msgpack().Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=codec-without-validator", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v Profile
			if err := unmarshalUnvalidated(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=msgpack.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v Profile
			if err := msgpack.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=validator-only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		v := new(validator)
		for b.Loop() {
			if err := v.validate(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=envelope", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(env)))
		for b.Loop() {
			var v Profile
			if _, err := Decode(Msgpack(), env, 0, 0, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMsgpack_Encode(b *testing.B) {
	p := testProfile()
	b.Run("impl=codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Msgpack().Marshal(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=msgpack.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := msgpack.Marshal(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=envelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(Msgpack(), Header{}, &p, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=envelope,compress=on", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(Msgpack(), Header{}, &p, 64); err != nil {
				b.Fatal(err)
			}
		}
	})
}
