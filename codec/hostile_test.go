package codec

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// hostileInputs declare far more data than they hold. Given to msgpack
// v5.4.1 without validation, the first one kills the process with a fatal
// out-of-memory error when decoded into a slice of structs: the library
// allocates all 4294967295 elements before it reads the first.
var hostileInputs = []struct {
	name string
	data []byte
	// valid is set for the inputs that are a valid time, so that they decode
	// without error into an interface.
	valid bool
}{
	{"array32", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, false},
	{"map32", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, false},
	{"str32", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, false},
	{"bin32", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}, false},
	{"ext32", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
	{"nested array32", []byte{0x91, 0xdd, 0xff, 0xff, 0xff, 0xff}, false},
	{"array16 of array32", []byte{0xdc, 0x00, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff}, false},
	{"field tags array32", append([]byte{0x81, 0xa4, 't', 'a', 'g', 's'}, 0xdd, 0xff, 0xff, 0xff, 0xff), false},
	{"field sessions array32", append([]byte{0x81, 0xa8, 's', 'e', 's', 's', 'i', 'o', 'n', 's'}, 0xdd, 0xff, 0xff, 0xff, 0xff), false},
	{"field languages map32", append([]byte{0x81, 0xa9, 'l', 'a', 'n', 'g', 'u', 'a', 'g', 'e', 's'}, 0xdf, 0xff, 0xff, 0xff, 0xff), false},
	// Structurally valid: the huge lengths hide in extension payloads, which
	// msgpack reads as maps where the Go type is a map (see ext_test.go).
	{"map32 in a time", []byte{0xd7, 0xff, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00}, true},
	{"array32 in an ext", []byte{0xc7, 0x09, 0x05, 0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00}, false},
	{"field languages map32 in a time", append([]byte{0x81, 0xa9, 'l', 'a', 'n', 'g', 'u', 'a', 'g', 'e', 's'}, 0xd7, 0xff, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00), true},
}

var hostileTargets = []struct {
	name string
	new  func() any
}{
	{"*[]string", func() any { return new([]string) }},
	{"*[]Profile", func() any { return new([]Profile) }},
	{"*[][]Profile", func() any { return new([][]Profile) }},
	{"*[]int64", func() any { return new([]int64) }},
	{"*map[string]int", func() any { return new(map[string]int) }},
	{"*map[string]any", func() any { return new(map[string]any) }},
	{"*map[string][]Profile", func() any { return new(map[string][]Profile) }},
	{"*Profile", func() any { return new(Profile) }},
	{"*[]byte", func() any { return new([]byte) }},
	{"*any", func() any { return new(any) }},
}

// allocatedBy returns the bytes the process allocated while f ran. The
// caller turns the garbage collector off, so nothing is freed in between.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestMsgpack_Unmarshal_HostileLength(t *testing.T) {
	// Not parallel: the allocation count covers the whole process, and the
	// garbage collector is off while it runs.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const limit = 1 << 20

	for _, in := range hostileInputs {
		for _, tgt := range hostileTargets {
			t.Run(in.name+"/into="+tgt.name, func(t *testing.T) {
				v := tgt.new()
				var err error
				n := allocatedBy(func() { err = Msgpack().Unmarshal(in.data, v) })
				require.Less(t, n, uint64(limit), "Unmarshal allocated %d bytes", n)
				if err == nil && in.valid {
					return // a time into an interface
				}
				require.ErrorIs(t, err, ErrCorrupt)

				data := envelope(0, 1, 0, in.data)
				v = tgt.new()
				n = allocatedBy(func() { _, err = Decode(Msgpack(), data, 0, 0, v) })
				require.ErrorIs(t, err, ErrCorrupt)
				require.Less(t, n, uint64(limit), "Decode allocated %d bytes", n)
			})
		}
	}
}

// TestMsgpack_Unmarshal_LibraryTrustsLengths shows, at a size that is safe
// to run, what the validator protects against: msgpack.Unmarshal allocates
// for the element count an array declares, even when the input holds none
// of the elements. Scaled up to dd ff ff ff ff, that is the fatal
// out-of-memory error (which this test must never trigger: a fatal error
// cannot be recovered and would take the test binary and the machine's
// memory with it, so no subprocess test runs the real thing).
func TestMsgpack_Unmarshal_LibraryTrustsLengths(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	data := []byte{0xdd, 0x00, 0x10, 0x00, 0x00} // array32 of 1<<20 elements, none present

	var raw []int64
	var rawErr error
	rawAlloc := allocatedBy(func() { rawErr = msgpack.Unmarshal(data, &raw) })
	require.Error(t, rawErr)
	require.GreaterOrEqual(t, rawAlloc, uint64(8<<20), "msgpack.Unmarshal should allocate 1<<20 int64s")

	var ours []int64
	var err error
	ourAlloc := allocatedBy(func() { err = Msgpack().Unmarshal(data, &ours) })
	require.ErrorIs(t, err, ErrCorrupt)
	require.Less(t, ourAlloc, uint64(64<<10))
	t.Logf("msgpack.Unmarshal allocated %d bytes, Msgpack().Unmarshal %d bytes", rawAlloc, ourAlloc)
}
