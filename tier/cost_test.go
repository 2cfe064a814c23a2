package tier_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
	"github.com/tiercache/tiercache/tiertest"
)

// L1 charges every entry with its real encoded size on every path that
// installs one (issue 12: an entry refilled from L2, a stale one or a
// batch one was charged as if its value were empty, so an L1 sized for N
// values held several times N). Each path fills an L1 sized for costN
// values with 4*costN keys; L1 must hold at most costN of them, and at
// least one (the test is not vacuous).
func TestCache_L1Cost_BoundedOnEveryPath(t *testing.T) {
	t.Parallel()
	const costN = 40
	value := strings.Repeat("v", 1000)
	keys := make([]string, 4*costN)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%04d", i)
	}
	// The default Cost is the encoded size + len(key) + 128; the envelope
	// adds a header of less than 64 bytes to the 1003 of the msgpack string.
	maxCost := int64(costN * (len(value) + 3 + len(keys[0]) + 128))
	srv := redistest.Start(t)
	clock := newFakeClock()
	base := tier.Options[string]{TTL: time.Hour, Jitter: tier.NoJitter, L1MaxCost: maxCost, Clock: clock, L2Timeout: 5 * time.Second}
	noLoad := func(_ context.Context, key string) (string, error) {
		t.Errorf("loader called for %q: the value is in L2", key)
		return "", tier.ErrNotFound
	}
	noBatchLoad := func(_ context.Context, keys []string) (map[string]string, error) {
		t.Errorf("batch loader called for %d keys: the values are in L2", len(keys))
		return nil, nil
	}
	load := func(context.Context, string) (string, error) { return value, nil }
	batchLoad := func(_ context.Context, keys []string) (map[string]string, error) {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = value
		}
		return m, nil
	}
	// inL2 fills L2 with every key through another instance, and waits
	// until its L2 writes (after it answered) are done.
	inL2 := func(t *testing.T, o tier.Options[string]) {
		o.L1MaxCost = 0
		w, rdb := instance(t, srv, o)
		for _, k := range keys {
			_, err := w.GetOrLoad(t.Context(), k, load)
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool {
			n, err := rdb.Exists(t.Context(), w.Key(keys[0]), w.Key(keys[len(keys)-1])).Result()
			return err == nil && n == 2
		}, 10*time.Second, 5*time.Millisecond)
		for _, k := range keys {
			require.Eventually(t, func() bool { return rdb.Exists(t.Context(), w.Key(k)).Val() == 1 }, 10*time.Second, time.Millisecond)
		}
	}
	inBatches := func(t *testing.T, c *tier.Cache[string], load tier.BatchLoadFunc[string]) {
		for i := 0; i < len(keys); i += 10 {
			m, err := c.GetOrLoadMany(t.Context(), keys[i:i+10], load)
			require.NoError(t, err)
			require.Len(t, m, 10)
		}
	}
	tests := []struct {
		name string
		fill func(t *testing.T, ns string) *tier.Cache[string]
	}{
		{"load", func(t *testing.T, _ string) *tier.Cache[string] {
			c := newCache(t, &base)
			for _, k := range keys {
				_, err := c.GetOrLoad(t.Context(), k, load)
				require.NoError(t, err)
			}
			return c
		}},
		{"L2 refill", func(t *testing.T, ns string) *tier.Cache[string] {
			o := base
			o.Namespace = ns
			inL2(t, o)
			c, _ := instance(t, srv, o)
			for _, k := range keys {
				v, err := c.GetOrLoad(t.Context(), k, noLoad)
				require.NoError(t, err)
				require.Equal(t, value, v)
			}
			return c
		}},
		{"batch load", func(t *testing.T, _ string) *tier.Cache[string] {
			c := newCache(t, &base)
			inBatches(t, c, batchLoad)
			return c
		}},
		{"batch L2 refill", func(t *testing.T, ns string) *tier.Cache[string] {
			o := base
			o.Namespace = ns
			inL2(t, o)
			c, _ := instance(t, srv, o)
			inBatches(t, c, noBatchLoad)
			return c
		}},
		{"stale from L2", func(t *testing.T, ns string) *tier.Cache[string] {
			o := base
			o.Namespace, o.Clock = ns, newFakeClock()
			o.TTL, o.FailSafe, o.FailSafeThrottle = time.Minute, time.Hour, time.Hour
			inL2(t, o)
			o.Clock.(*tiertest.Clock).Advance(2 * time.Minute) // past the values' fresh life
			c, _ := instance(t, srv, o)
			for _, k := range keys {
				v, err := c.GetOrLoad(t.Context(), k, func(context.Context, string) (string, error) { return "", errDB })
				require.NoError(t, err, "the stale value from L2 stands in for the failed load")
				require.Equal(t, value, v)
			}
			require.EqualValues(t, len(keys), c.Stats().StaleServed)
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.fill(t, "t-"+strings.ReplaceAll(t.Name(), "/", "-"))
			tier.WaitL1(c)
			held := 0
			for _, k := range keys {
				if _, ok := c.GetIfPresent(k); ok {
					held++
				}
			}
			s := c.Stats()
			t.Logf("L1 sized for %d values holds %d of %d keys; cost %d of %d", costN, held, len(keys), s.L1Cost, maxCost)
			require.Positive(t, held)
			require.LessOrEqual(t, held, costN)
			require.LessOrEqual(t, s.L1Cost, maxCost)
		})
	}
}
