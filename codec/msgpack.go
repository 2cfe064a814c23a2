package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Msgpack returns the default codec, which uses
// github.com/vmihailenco/msgpack/v5 with its default settings. Its id is 1.
// It is safe for concurrent use.
//
// Marshal produces exactly the bytes of msgpack.Marshal (neither sorts map
// keys, so maps of several keys encode in random order); structs use their
// `msgpack` tags. Unmarshal first checks the bytes with a structural validator
// (see the package documentation), then decodes them with a pooled decoder.
//
// NOTE: unlike msgpack.Unmarshal, Unmarshal does not turn on the library's
// UsePreallocateValues option: in v5.4.1 that option starts, for every map
// element and pointer type it meets, a goroutine that never exits.
//
// WARNING: the validator sees the payload of an msgpack extension as opaque
// bytes. Types registered with msgpack.RegisterExt, and types implementing
// msgpack.Unmarshaler or msgpack.CustomDecoder, must not pass the bytes they
// get to msgpack.Unmarshal (use this codec instead). A decoder registered
// with msgpack.RegisterExtDecoder that reads its payload value by value
// through the *msgpack.Decoder fails when the payload starts with a map or
// nil: the codec cannot tell that read from the library misreading an
// extension as a map.
func Msgpack() Codec { return msgpackCodec{} }

type msgpackCodec struct{}

var _ Codec = msgpackCodec{}

func (msgpackCodec) ID() byte     { return idMsgpack }
func (msgpackCodec) Name() string { return "msgpack" }

// maxPooledBuffer is the largest buffer capacity returned to a pool, so that
// one large value does not pin its memory for the life of the process.
const maxPooledBuffer = 64 << 10

// encoderState is a pooled encoder with the buffer it writes to.
type encoderState struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoderPool = sync.Pool{New: func() any {
	s := new(encoderState)
	s.enc = msgpack.NewEncoder(&s.buf)
	return s
}}

func getEncoder() *encoderState {
	s := encoderPool.Get().(*encoderState)
	s.buf.Reset()
	s.enc.Reset(&s.buf) // default settings, as msgpack.Marshal uses
	return s
}

func putEncoder(s *encoderState) {
	if s.buf.Cap() > maxPooledBuffer {
		s.buf = bytes.Buffer{} // s.enc writes to &s.buf, which stays valid
	}
	encoderPool.Put(s)
}

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	s := getEncoder()
	defer putEncoder(s)
	if err := s.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("codec: %w", err) // "codec: msgpack: ..."
	}
	return bytes.Clone(s.buf.Bytes()), nil
}

// decoderState is a pooled decoder with the reader it reads from. The
// reader is an io.ByteScanner, so the decoder adds no bufio.Reader.
type decoderState struct {
	v   validator
	r   guardedReader
	dec *msgpack.Decoder
}

var decoderPool = sync.Pool{New: func() any {
	s := new(decoderState)
	s.dec = msgpack.NewDecoder(&s.r)
	return s
}}

func (msgpackCodec) Unmarshal(data []byte, v any) (err error) {
	s := decoderPool.Get().(*decoderState)
	if err := s.v.validate(data); err != nil {
		s.release()
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			// Do not pool a decoder left in an unknown state.
			err = panicError("msgpack", r)
			return
		}
		s.release()
	}()
	s.r.reset(data, s.v.stops)
	s.dec.Reset(&s.r) // also clears every option: no UsePreallocateValues
	if err := s.dec.Decode(v); err != nil {
		return corrupt("unmarshal", err) // "...: unmarshal: msgpack: ..."
	}
	return nil
}

// release drops the references to the caller's data and returns s to the
// pool.
func (s *decoderState) release() {
	s.r.reset(nil, nil)
	if cap(s.v.stops) > maxPooledBuffer/8 {
		s.v.stops = nil // do not pin a large slice in the pool
	}
	decoderPool.Put(s)
}

// guardedReader reads data like a bytes.Reader, except that ReadByte fails
// at the offsets in stops: the starts of extension payloads that
// msgpack's DecodeMapLen would otherwise read as a map (see
// validator.validate). The library reads a value's first byte with ReadByte
// and an extension payload with Read, so only the misreading is refused.
type guardedReader struct {
	data  []byte
	pos   int
	stops []int // ascending
	next  int   // stops[:next] are all below pos, as far as ReadByte knows
}

func (r *guardedReader) reset(data []byte, stops []int) {
	*r = guardedReader{data: data, stops: stops}
}

// errExtAsMap is what the decoder gets when it tries to read an extension
// payload as a map.
var errExtAsMap = errors.New("msgpack: extension payload read as a map")

// Read implements io.Reader.
func (r *guardedReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.data[r.pos:])
	r.pos += n
	return n, nil
}

// ReadByte implements io.ByteReader.
func (r *guardedReader) ReadByte() (byte, error) {
	for r.next < len(r.stops) && r.stops[r.next] < r.pos {
		r.next++
	}
	if r.next < len(r.stops) && r.stops[r.next] == r.pos {
		return 0, fmt.Errorf("%w at offset %d", errExtAsMap, r.pos)
	}
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	c := r.data[r.pos]
	r.pos++
	return c, nil
}

// UnreadByte implements io.ByteScanner.
func (r *guardedReader) UnreadByte() error {
	if r.pos <= 0 {
		return errors.New("codec: UnreadByte at the start of the input")
	}
	r.pos--
	for r.next > 0 && r.stops[r.next-1] >= r.pos {
		r.next--
	}
	return nil
}

// panicError turns a value recovered from a panic in the named library into
// a *DecodeError.
func panicError(lib string, r any) error {
	if err, ok := r.(error); ok {
		return corrupt(lib+" decoder panicked", err)
	}
	return corrupt(lib+" decoder panicked", fmt.Errorf("%v", r))
}
