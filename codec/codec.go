package codec

// Codec turns values into bytes and back.
//
// NOTE: implementations must be safe for concurrent use. Unmarshal must not
// keep a reference to data after it returns: the caller may reuse the buffer.
//
// WARNING: Unmarshal receives bytes read from a shared store, which may be
// corrupt or hostile. It must return an error for bad input rather than
// panic or allocate without bound ([Decode] recovers panics as a last resort).
type Codec interface {
	// ID returns the stable id written into the envelope. 1 is msgpack and
	// 2 is JSON; ids up to 127 are reserved for this package and user codecs
	// use 128..255. The id of a codec must never change once values written
	// with it may exist.
	ID() byte
	// Name returns a short lower-case name such as "msgpack", for errors and
	// telemetry.
	Name() string
	// Marshal returns the encoding of v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, which is a non-nil pointer. The
	// built-in codecs return a [*DecodeError] (which matches [ErrCorrupt])
	// for every failure.
	Unmarshal(data []byte, v any) error
}

// Built-in codec ids.
const (
	idMsgpack byte = 1
	idJSON    byte = 2
)
