package tier_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/obstest"
	"github.com/tiercache/tiercache/tier"
	"github.com/tiercache/tiercache/tiertest"
)

// recorder is the recording observer the tests share.
type recorder = obstest.Recorder

// newFakeClock returns a Clock that moves only when told.
func newFakeClock() *tiertest.Clock {
	return tiertest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

type profile struct {
	ID    int64    `msgpack:"id" json:"id"`
	Name  string   `msgpack:"name" json:"name"`
	Email string   `msgpack:"email" json:"email"`
	Tags  []string `msgpack:"tags" json:"tags"`
}

// newCache returns a cache closed at the end of the test.
func newCache[V any](t *testing.T, o *tier.Options[V]) *tier.Cache[V] {
	t.Helper()
	c, err := tier.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// counted wraps a loader and counts its calls.
func counted[V any](n *atomic.Int64, f tier.LoadFunc[V]) tier.LoadFunc[V] {
	return func(ctx context.Context, key string) (V, error) {
		n.Add(1)
		return f(ctx, key)
	}
}
