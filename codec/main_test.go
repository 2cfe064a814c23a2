package codec

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The baseline benchmarks call msgpack.Unmarshal, which turns on
		// UsePreallocateValues and so starts a never-ending goroutine per
		// decoded map element type. Our codec does not (see
		// TestMsgpack_Unmarshal_StartsNoGoroutine, which runs before them).
		goleak.IgnoreAnyFunction("github.com/vmihailenco/msgpack/v5.cachedValue.func1"),
	)
}
