package codec

import (
	"encoding/binary"
	"fmt"
)

// MaxDepth is the deepest nesting of msgpack arrays and maps that the
// [Msgpack] codec accepts. It keeps the library's recursive decoder far from
// the limits of the goroutine stack.
const MaxDepth = 512

// validator holds the state of validate. Its zero value is ready to use;
// the msgpack codec keeps one in each pooled decoder.
type validator struct {
	// open[d] is how many values the container at depth d still owed when
	// the one at depth d+1 opened. Only entries below the current depth are
	// read, and each is written before, so the array is never cleared.
	open [MaxDepth]uint64
	// stops holds the offsets of the extension payloads that the decoder
	// must not read as a map, in ascending order.
	stops []int
}

// validate checks that data holds exactly one well-formed msgpack
// value whose declared lengths all fit in the bytes that follow them. It
// walks the stream iteratively, without allocating (the stack of open
// containers is a fixed array in v, which need not be zeroed), in
// O(len(data)) time.
//
// Each value takes at least one byte, so a container's n elements (2n for a
// map) must fit in the bytes that remain; the walk checks the stronger bound
// that all values still owed by every open container fit. That bound is what
// keeps msgpack v5.4.1 from allocating for billions of elements declared by a
// five-byte input.
//
// The walk is only sound if the decoder reads the stream the way the walk
// does. msgpack v5.4.1 departs from it in one place: where the Go type is a
// map and the stream holds an extension, Decoder.DecodeMapLen skips the
// extension's header and reads a map header from the first byte of its
// payload, ignoring the declared payload length. Time values are extensions
// and about one in thirteen of them has a payload that starts with a map
// code, so such payloads cannot simply be refused. Instead, validate
// records in v.stops the offset of every extension payload that starts with
// a map code or nil, and the decoder's reader ([guardedReader]) refuses to
// read a value header there: the library's ordinary paths read a payload as
// a block, never one code at a time. An empty payload followed by a map or
// nil cannot be guarded that way (its first "payload byte" is the next value),
// so it is refused here.
func (v *validator) validate(data []byte) error {
	v.stops = v.stops[:0]
	if len(data) == 0 {
		return corrupt("msgpack: empty input", nil)
	}
	var (
		depth = 0         // open containers
		cur   = uint64(1) // values the innermost container still owes; at depth 0, the one value
		owed  = uint64(1) // values all open containers still owe
		i     = 0
	)
	for {
		for cur == 0 {
			if depth == 0 {
				if i != len(data) {
					return validationError("trailing bytes after the value", i)
				}
				return nil
			}
			depth--
			cur = v.open[depth]
		}
		if i >= len(data) {
			return validationError("unexpected end of input", i)
		}
		cur--
		owed--

		start := i
		c := data[i]
		i++
		var (
			body  uint64 // bytes after the header (for an extension: type and payload)
			items uint64 // values owed by a container that opens here
			ext   bool   // an extension: body is its type byte and payload
		)
		switch {
		case c <= 0x7f || c >= 0xe0: // positive and negative fixint
			continue
		case c <= 0x8f: // fixmap
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f: // fixarray
			items = uint64(c & 0x0f)
		case c <= 0xbf: // fixstr
			body = uint64(c & 0x1f)
		default:
			var n int // bytes of the length field
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
				continue
			case 0xc1:
				return validationError("reserved byte 0xc1", start)
			case 0xc4, 0xd9: // bin8, str8
				n = 1
			case 0xc5, 0xda: // bin16, str16
				n = 2
			case 0xc6, 0xdb: // bin32, str32
				n = 4
			case 0xc7: // ext8: length, type, payload
				n, body, ext = 1, 1, true
			case 0xc8: // ext16
				n, body, ext = 2, 1, true
			case 0xc9: // ext32
				n, body, ext = 4, 1, true
			case 0xcc, 0xd0: // uint8, int8
				body = 1
			case 0xcd, 0xd1: // uint16, int16
				body = 2
			case 0xca, 0xce, 0xd2: // float32, uint32, int32
				body = 4
			case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
				body = 8
			case 0xd4: // fixext1: type, payload
				body, ext = 1+1, true
			case 0xd5: // fixext2
				body, ext = 1+2, true
			case 0xd6: // fixext4
				body, ext = 1+4, true
			case 0xd7: // fixext8
				body, ext = 1+8, true
			case 0xd8: // fixext16
				body, ext = 1+16, true
			case 0xdc: // array16
				n = 2
			case 0xdd: // array32
				n = 4
			case 0xde: // map16
				n = 2
			case 0xdf: // map32
				n = 4
			}
			if n > 0 {
				if len(data)-i < n {
					return validationError("truncated length", start)
				}
				var l uint64
				switch n {
				case 1:
					l = uint64(data[i])
				case 2:
					l = uint64(binary.BigEndian.Uint16(data[i:]))
				default:
					l = uint64(binary.BigEndian.Uint32(data[i:]))
				}
				i += n
				switch c {
				case 0xdc, 0xdd:
					items = l
				case 0xde, 0xdf:
					items = 2 * l
				default:
					body += l
				}
			}
		}

		rest := uint64(len(data) - i)
		if body > rest {
			return lengthError(c, body, rest, start)
		}
		if ext {
			// body >= 1: the type byte. The payload starts after it.
			if q := i + 1; q < len(data) && mapOrNil(data[q]) {
				if body == 1 {
					return validationError("empty extension followed by a map or nil", start)
				}
				v.stops = append(v.stops, q)
			}
		}
		i += int(body)
		if items == 0 {
			continue
		}
		// Every owed value takes at least one byte.
		if owed+items > rest {
			return lengthError(c, items, rest, start)
		}
		if depth == MaxDepth {
			return validationError(fmt.Sprintf("nesting deeper than %d", MaxDepth), start)
		}
		v.open[depth] = cur
		depth++
		cur = items
		owed += items
	}
}

// mapOrNil reports whether c starts a map or is nil: the codes after which
// DecodeMapLen goes on decoding.
func mapOrNil(c byte) bool {
	return c&0xf0 == 0x80 || c == 0xde || c == 0xdf || c == 0xc0
}

func validationError(what string, offset int) error {
	return corrupt(fmt.Sprintf("msgpack: %s at offset %d", what, offset), nil)
}

func lengthError(c byte, declared, rest uint64, offset int) error {
	return corrupt(fmt.Sprintf("msgpack: value 0x%02x at offset %d declares %d, but %d bytes remain",
		c, offset, declared, rest), nil)
}
