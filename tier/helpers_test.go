package tier_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/obstest"
	"github.com/tiercache/tiercache/tier"
)

// recorder is the recording observer the tests share.
type recorder = obstest.Recorder

// fakeClock is a Clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

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
