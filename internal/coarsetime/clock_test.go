package coarsetime

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNow(t *testing.T) {
	before := time.Now().UnixNano()
	require.GreaterOrEqual(t, Now(), before, "precise before the first Acquire")
	Acquire()
	Acquire()
	start := Now()
	require.Eventually(t, func() bool { return Now() > start }, 5*time.Second, time.Millisecond, "it ticks")
	require.InDelta(t, float64(time.Now().UnixNano()), float64(Now()), float64(500*time.Millisecond))
	Release()
	require.NotZero(t, now.Load(), "still held once")
	Release() // goleak checks the goroutine is gone
	require.Zero(t, now.Load())
}

func BenchmarkNow(b *testing.B) {
	Acquire()
	defer Release()
	for b.Loop() {
		_ = Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now().UnixNano()
	}
}
