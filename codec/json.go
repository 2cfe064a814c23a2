package codec

import (
	"encoding/json"
	"fmt"
)

// JSON returns the codec that uses encoding/json. Its id is 2. It is safe for
// concurrent use.
//
// JSON is larger and slower than [Msgpack], but readable with redis-cli and
// by services written in other languages.
func JSON() Codec { return jsonCodec{} }

type jsonCodec struct{}

var _ Codec = jsonCodec{}

func (jsonCodec) ID() byte     { return idJSON }
func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: %w", err) // "codec: json: ..."
	}
	return b, nil
}

func (jsonCodec) Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError("json", r)
		}
	}()
	if err := json.Unmarshal(data, v); err != nil {
		return corrupt("unmarshal", err) // "...: unmarshal: json: ..."
	}
	return nil
}
