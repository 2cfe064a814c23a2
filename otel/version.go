package tierotel

// ScopeName is the instrumentation scope name of the tracer and the meter
// the [Observer] uses: this package's import path.
const ScopeName = "github.com/tiercache/tiercache/otel"

// Version is the version of this instrumentation, given to the tracer and
// the meter as the instrumentation scope's version.
const Version = "0.1.0"
