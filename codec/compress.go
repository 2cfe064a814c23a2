package codec

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math"
	"sync"
)

// compressLevel favours speed: values are compressed on every write.
const compressLevel = flate.BestSpeed

// deflaterState is a pooled flate writer with the buffer it writes to.
type deflaterState struct {
	buf bytes.Buffer
	w   *flate.Writer
}

var deflaterPool = sync.Pool{New: func() any {
	s := new(deflaterState)
	s.w, _ = flate.NewWriter(&s.buf, compressLevel) // the level is valid
	return s
}}

// deflate compresses payload and returns it after prefix bytes of room, in a
// new slice. ok is false when compression would not make it smaller.
func deflate(payload []byte, prefix int) (out []byte, ok bool) {
	s := deflaterPool.Get().(*deflaterState)
	defer func() {
		if s.buf.Cap() > maxPooledBuffer {
			s.buf = bytes.Buffer{} // keep the costly writer, not the large buffer
		}
		deflaterPool.Put(s)
	}()
	s.buf.Reset()
	s.w.Reset(&s.buf)
	// Writing to a bytes.Buffer does not fail.
	if _, err := s.w.Write(payload); err != nil {
		return nil, false
	}
	if err := s.w.Close(); err != nil {
		return nil, false
	}
	if s.buf.Len() >= len(payload) {
		return nil, false
	}
	out = make([]byte, prefix+s.buf.Len())
	copy(out[prefix:], s.buf.Bytes())
	return out, true
}

// inflaterState is a pooled flate reader with the reader it reads from.
type inflaterState struct {
	r  bytes.Reader
	fr io.ReadCloser
}

var inflaterPool = sync.Pool{New: func() any {
	s := new(inflaterState)
	s.fr = flate.NewReader(&s.r)
	return s
}}

// inflate decompresses a complete flate stream, refusing output longer than
// maxBytes and bytes after the end of the stream. Errors wrap ErrCorrupt.
func inflate(payload []byte, maxBytes int) ([]byte, error) {
	maxBytes = min(maxBytes, math.MaxInt-1) // so that maxBytes+1 does not overflow
	s := inflaterPool.Get().(*inflaterState)
	defer func() {
		s.r.Reset(nil)
		inflaterPool.Put(s)
	}()
	s.r.Reset(payload)
	// *bytes.Reader is an io.ByteReader, so the inflater reads no further
	// than the end of the stream and s.r.Len() counts what follows it.
	if err := s.fr.(flate.Resetter).Reset(&s.r, nil); err != nil {
		return nil, corrupt("inflate", err)
	}

	// Guess a 4:1 ratio to start with; grow by doubling up to maxBytes+1,
	// the first byte too many.
	out := make([]byte, 0, min(max(4*len(payload), 512), maxBytes+1))
	for {
		if len(out) == cap(out) {
			if len(out) > maxBytes {
				return nil, corrupt(fmt.Sprintf("inflated payload exceeds the %d-byte limit", maxBytes), ErrTooLarge)
			}
			out = append(out, 0)[:len(out)]
			out = out[:len(out):min(cap(out), maxBytes+1)]
		}
		n, err := s.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, corrupt("inflate", err)
		}
	}
	if len(out) > maxBytes {
		return nil, corrupt(fmt.Sprintf("inflated payload exceeds the %d-byte limit", maxBytes), ErrTooLarge)
	}
	if s.r.Len() != 0 {
		return nil, corrupt(fmt.Sprintf("%d bytes after the end of the flate stream", s.r.Len()), nil)
	}
	return out, nil
}
