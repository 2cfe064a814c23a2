// Package codec turns cached values into bytes and back for the shared (L2)
// tier of tiercache, and wraps those bytes in a small versioned envelope.
//
// A [Codec] marshals and unmarshals values. Two are built in: [Msgpack], the
// default, and [JSON]. Each codec has a stable one-byte id that is written
// into the envelope, so that bytes written with one codec are never decoded
// with another: ids 1..127 are reserved for this package (1 is msgpack,
// 2 is JSON) and user codecs take ids 128..255.
//
// # Envelope
//
// [Encode] writes a fixed [HeaderSize]-byte little-endian header followed by
// the payload:
//
//	magic "TC" (2) | version (1) | flags (1) | codec id (1) | schema uint32 (4) |
//	created int64 (8) | soft expiry int64 (8) | fail-safe deadline int64 (8) | payload
//
// The times are Unix nanoseconds. [FlagNegative] marks a cached "not found"
// (empty payload) and [FlagCompressed] a payload compressed with
// compress/flate. [Parse] reads the header without decoding the payload, and
// [Decode] checks the header against the reader's codec and schema, inflates
// the payload under a size limit and unmarshals it.
//
// # Bad bytes are a miss
//
// Every failure of [Parse] and [Decode] wraps [ErrCorrupt] (check it with
// errors.Is, or inspect the [*DecodeError]); a schema or codec mismatch also
// wraps [ErrSchemaMismatch] or [ErrCodecMismatch]. The cache treats such a
// value as a miss. Decode never panics, whatever the input.
//
// # Msgpack safety
//
// github.com/vmihailenco/msgpack/v5 v5.4.1 trusts the lengths declared in its
// input: decoding the five bytes dd ff ff ff ff (an array of 4294967295
// elements) into a slice makes it allocate for all of them and the process
// dies with a fatal out-of-memory error that no recover can catch. The
// [Msgpack] codec therefore runs an allocation-free structural validator over
// the bytes before handing them to the library: every declared length must fit
// in the bytes that remain, containers may nest at most [MaxDepth] deep, and
// the input must hold exactly one value.
//
// The validator is only as good as its agreement with the decoder on where
// each value starts, and v5.4.1 disagrees in one place: where the Go type
// is a map and the stream holds an extension (a time, say), it skips the
// extension's header and reads a map from its payload, ignoring the declared
// length. A ten-byte, well-formed time value can so declare a map of four
// billion entries. The codec's reader refuses that one read (see
// TestMsgpack_Unmarshal_ExtReadAsMap); legitimate times decode as before.
//
// Panics from the library (it has some, for example on nil for a struct
// type with a DecodeMsgpack method) are recovered and returned as errors.
// Decoding still allocates in proportion to its input, by a factor as large
// as the size of the element type: an array of n nils decodes into n zero
// structs.
package codec
