package ratelimit

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBreaker(t *testing.T) {
	t.Parallel()
	var now int64
	b := newBreaker(3, time.Second, func() int64 { return now })
	errDown := errors.New("down")
	for range 2 {
		require.True(t, b.Allow())
		b.Failure(errDown)
	}
	b.Success() // resets the run of failures
	for range 3 {
		require.True(t, b.Allow())
		b.Failure(errDown)
	}
	require.False(t, b.Allow(), "open")
	now += int64(time.Second)
	require.True(t, b.Allow(), "the probe")
	require.False(t, b.Allow(), "one probe per cool-down")
	b.Failure(errDown)
	require.False(t, b.Allow())
	now += int64(time.Second)
	require.True(t, b.Allow())
	b.Success()
	require.True(t, b.Allow(), "closed")
	require.True(t, b.Allow())
	require.Equal(t, uint64(1), b.opens.Load())
}
