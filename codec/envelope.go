package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Envelope layout constants.
const (
	// HeaderSize is the size in bytes of the fixed envelope header.
	HeaderSize = 33
	// Version is the envelope version that [Encode] writes and the only one
	// that [Parse] accepts.
	Version = 1
	// DefaultMaxBytes is the payload limit [Decode] applies when it is
	// given maxBytes <= 0: 64 MiB.
	DefaultMaxBytes = 64 << 20
)

const (
	magic0 = 'T'
	magic1 = 'C'
)

// Flags are the bits of the envelope's flags byte.
type Flags uint8

// Envelope flags. The other bits are reserved: [Parse] rejects them.
const (
	// FlagNegative marks a cached "not found". The payload is empty.
	FlagNegative Flags = 1 << 0
	// FlagCompressed marks a payload compressed with compress/flate. [Encode]
	// sets it; callers do not.
	FlagCompressed Flags = 1 << 1

	knownFlags = FlagNegative | FlagCompressed
)

// Header is the decoded envelope header. The times are Unix nanoseconds, as
// from time.Time.UnixNano.
type Header struct {
	// Flags holds FlagNegative and FlagCompressed.
	Flags Flags
	// Codec is the id of the codec that wrote the payload.
	Codec byte
	// Schema is a user-bumpable schema tag. A mismatch is treated as a miss
	// by the cache.
	Schema uint32
	// Created is when the value was stored, in Unix nanoseconds.
	Created int64
	// SoftExpiry is when the value stops being fresh, in Unix nanoseconds.
	SoftExpiry int64
	// Deadline is the fail-safe deadline in Unix nanoseconds: until then a
	// stale value may be served if the origin fails.
	Deadline int64
}

// putHeader writes h into b, which holds at least HeaderSize bytes.
func putHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	b[0], b[1] = magic0, magic1
	b[2] = Version
	b[3] = byte(h.Flags)
	b[4] = h.Codec
	binary.LittleEndian.PutUint32(b[5:], h.Schema)
	binary.LittleEndian.PutUint64(b[9:], uint64(h.Created))
	binary.LittleEndian.PutUint64(b[17:], uint64(h.SoftExpiry))
	binary.LittleEndian.PutUint64(b[25:], uint64(h.Deadline))
}

// Encode returns the envelope for v: the header h followed by c.Marshal(v),
// or by nothing when h.Flags has [FlagNegative] (v is then ignored).
//
// Encode sets h.Codec to c.ID() and decides [FlagCompressed] itself: if
// compressAbove > 0 and the payload is longer than compressAbove bytes, it
// compresses the payload with compress/flate and keeps the result when it
// is smaller. Other flag bits are an error.
func Encode(c Codec, h Header, v any, compressAbove int) ([]byte, error) {
	if c == nil {
		return nil, errors.New("codec: Encode with a nil Codec")
	}
	if h.Flags&^knownFlags != 0 {
		return nil, fmt.Errorf("codec: unknown flags %#02x", uint8(h.Flags&^knownFlags))
	}
	h.Codec = c.ID()
	h.Flags &^= FlagCompressed
	if h.Flags&FlagNegative != 0 {
		out := make([]byte, HeaderSize)
		putHeader(out, h)
		return out, nil
	}

	var payload []byte
	if _, ok := c.(msgpackCodec); ok {
		// Encode into a pooled buffer and copy once, into the envelope.
		s := getEncoder()
		defer putEncoder(s)
		if err := s.enc.Encode(v); err != nil {
			return nil, fmt.Errorf("codec: %w", err) // "codec: msgpack: ..."
		}
		payload = s.buf.Bytes()
	} else {
		var err error
		if payload, err = c.Marshal(v); err != nil {
			if _, ok := c.(jsonCodec); ok {
				return nil, err // already "codec: json: ..."
			}
			return nil, fmt.Errorf("codec: %s marshal %T: %w", c.Name(), v, err)
		}
	}
	if compressAbove > 0 && len(payload) > compressAbove {
		if out, ok := deflate(payload, HeaderSize); ok {
			h.Flags |= FlagCompressed
			putHeader(out, h)
			return out, nil
		}
	}
	out := make([]byte, HeaderSize+len(payload))
	putHeader(out, h)
	copy(out[HeaderSize:], payload)
	return out, nil
}

// Parse checks the envelope header of data and returns it with the raw
// payload, which aliases data: Parse neither decodes, decompresses nor
// copies. Every error wraps [ErrCorrupt].
func Parse(data []byte) (Header, []byte, error) {
	if len(data) < HeaderSize {
		return Header{}, nil, corrupt(fmt.Sprintf("%d bytes, shorter than the %d-byte header", len(data), HeaderSize), nil)
	}
	if data[0] != magic0 || data[1] != magic1 {
		return Header{}, nil, corrupt(fmt.Sprintf("bad magic %#04x", data[:2]), nil)
	}
	if data[2] != Version {
		return Header{}, nil, corrupt(fmt.Sprintf("unknown envelope version %d", data[2]), nil)
	}
	h := Header{
		Flags:      Flags(data[3]),
		Codec:      data[4],
		Schema:     binary.LittleEndian.Uint32(data[5:]),
		Created:    int64(binary.LittleEndian.Uint64(data[9:])),
		SoftExpiry: int64(binary.LittleEndian.Uint64(data[17:])),
		Deadline:   int64(binary.LittleEndian.Uint64(data[25:])),
	}
	payload := data[HeaderSize:]
	switch {
	case h.Flags&^knownFlags != 0:
		return Header{}, nil, corrupt(fmt.Sprintf("unknown flags %#02x", uint8(h.Flags&^knownFlags)), nil)
	case h.Flags&FlagNegative != 0 && h.Flags&FlagCompressed != 0:
		return Header{}, nil, corrupt("negative value marked compressed", nil)
	case h.Flags&FlagNegative != 0 && len(payload) != 0:
		return Header{}, nil, corrupt(fmt.Sprintf("negative value with a %d-byte payload", len(payload)), nil)
	}
	return h, payload, nil
}

// Decode parses data, checks that it was written by c with schema
// wantSchema, decompresses the payload if needed and unmarshals it into v,
// which must be a non-nil pointer. For a negative value (h.Flags has
// [FlagNegative]) it returns the header and leaves v alone.
//
// maxBytes bounds the payload after decompression; maxBytes <= 0 means
// [DefaultMaxBytes]. A larger payload is refused with [ErrTooLarge] before
// it is inflated or decoded.
//
// Every error wraps [ErrCorrupt] (a schema mismatch also wraps
// [ErrSchemaMismatch], a codec mismatch [ErrCodecMismatch]); the only
// exception is a nil c. Once the header has parsed, Decode returns it even
// with an error, so that callers can log what they refused. Decode recovers
// a panic in c.Unmarshal and returns it as an error: it never panics.
func Decode(c Codec, data []byte, wantSchema uint32, maxBytes int, v any) (h Header, err error) {
	if c == nil {
		return Header{}, errors.New("codec: Decode with a nil Codec")
	}
	h, payload, err := Parse(data)
	if err != nil {
		return Header{}, err
	}
	if id := c.ID(); h.Codec != id {
		return h, corrupt(fmt.Sprintf("codec id %d, want %d (%s)", h.Codec, id, c.Name()), ErrCodecMismatch)
	}
	if h.Schema != wantSchema {
		return h, corrupt(fmt.Sprintf("schema %d, want %d", h.Schema, wantSchema), ErrSchemaMismatch)
	}
	if h.Flags&FlagNegative != 0 {
		return h, nil
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if h.Flags&FlagCompressed != 0 {
		if payload, err = inflate(payload, maxBytes); err != nil {
			return h, err
		}
	} else if len(payload) > maxBytes {
		return h, corrupt(fmt.Sprintf("payload of %d bytes exceeds the %d-byte limit", len(payload), maxBytes), ErrTooLarge)
	}

	defer func() {
		if r := recover(); r != nil {
			err = panicError(c.Name(), r)
		}
	}()
	if err := c.Unmarshal(payload, v); err != nil {
		if _, ok := errors.AsType[*DecodeError](err); ok {
			return h, err
		}
		return h, corrupt(c.Name()+" unmarshal", err)
	}
	return h, nil
}
