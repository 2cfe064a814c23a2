package idempotency

import (
	"fmt"
	"net/http"

	"github.com/tiercache/tiercache/codec"
)

// resultSchema is the envelope schema of a recorded [Result]. Bump it when
// storedResult changes shape: records written with another schema are then
// refused as corrupt (never replayed wrongly, never run again).
const resultSchema = 1

// Result is what an attempt records and what every retry gets back: for
// the middleware, the handler's response. Recorded results are immutable;
// do not modify one returned by the Store.
type Result struct {
	// Status is the HTTP status code (or, outside HTTP, any code the
	// caller gives it meaning).
	Status int
	// Header holds the response headers to replay.
	Header http.Header
	// Body is the response body, replayed byte for byte.
	Body []byte
}

// storedResult is the encoded form of a Result.
type storedResult struct {
	Status int                 `msgpack:"s" json:"s"`
	Header map[string][]string `msgpack:"h,omitempty" json:"h,omitempty"`
	Body   []byte              `msgpack:"b,omitempty" json:"b,omitempty"`
}

// encodeResult returns r inside the cache's envelope.
func (s *Store) encodeResult(r Result) ([]byte, error) {
	b, err := codec.Encode(s.o.Codec, codec.Header{Schema: resultSchema}, storedResult{Status: r.Status, Header: r.Header, Body: r.Body}, 0)
	if err != nil {
		return nil, fmt.Errorf("idempotency: encode result: %w", err)
	}
	if len(b) > s.o.MaxResultBytes {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrResponseTooLarge, len(b), s.o.MaxResultBytes)
	}
	return b, nil
}

// decodeResult decodes a recorded result; every failure wraps ErrCorrupt.
func (s *Store) decodeResult(b []byte) (*Result, error) {
	var sr storedResult
	if _, err := codec.Decode(s.o.Codec, b, resultSchema, s.o.MaxResultBytes, &sr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &Result{Status: sr.Status, Header: http.Header(sr.Header), Body: sr.Body}, nil
}

// size is the approximate memory r holds, for L1's cost.
func (r *Result) size() int64 {
	n := int64(len(r.Body)) + 64
	for k, vs := range r.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}
