package tier_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// order is a value type other than profile, whose msgpack decoder ignores
// profile's fields: decoding a profile's bytes into it "works" and gives
// a zero order.
type order struct {
	Total int      `msgpack:"total"`
	Items []string `msgpack:"items"`
}

func TestNew_L2WithoutNamespaceRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	l2 := goredis.Must(srv.Client(t), nil)
	for _, o := range []*tier.Options[order]{{L2: l2}, {Name: "orders", L2: l2}} {
		c, err := tier.New(o)
		require.ErrorIs(t, err, tier.ErrNoNamespace)
		require.ErrorIs(t, err, tier.ErrInvalidOptions)
		require.ErrorContains(t, err, "Options.Namespace")
		require.Nil(t, c)
	}
	c := newCache(t, &tier.Options[order]{Namespace: "orders-" + t.Name(), L2: l2})
	require.Equal(t, "orders-"+t.Name(), c.Name(), "Name defaults to Namespace")
	l1only := newCache(t, &tier.Options[order]{})
	require.Equal(t, "default", l1only.Name(), "an L1-only cache needs no namespace")
}

// Two caches of different value types on one namespace (a configuration
// mistake) never hand each other's bytes out as a zero value: the reader
// sees a counted decode error, loads, and the writer's value is gone.
func TestCache_L2_AnotherTypeIsAMiss(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := "shared-" + t.Name()
	rec := &recorder{}
	users, _ := instance(t, srv, tier.Options[*profile]{Namespace: ns})
	orders, rdb := instance(t, srv, tier.Options[order]{Namespace: ns, Observer: rec})
	require.Equal(t, users.Key("k"), orders.Key("k"), "the two caches share keys")

	require.NoError(t, users.Set(t.Context(), "k", &profile{ID: 7, Name: "Ann", Email: "ann@example.com"}, time.Hour))
	n, err := rdb.Exists(t.Context(), users.Key("k")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the profile is in L2")

	var loads atomic.Int64
	got, err := orders.GetOrLoad(t.Context(), "k", counted(&loads, func(context.Context, string) (order, error) {
		return order{Total: 42, Items: []string{"a"}}, nil
	}))
	require.NoError(t, err)
	require.Equal(t, order{Total: 42, Items: []string{"a"}}, got, "the origin answered, not a zero order")
	require.EqualValues(t, 1, loads.Load())
	require.EqualValues(t, 1, orders.Stats().DecodeErrors)
	require.Equal(t, 1, rec.Count(tier.EventDecodeError))

	// A *T and a T encode alike and share a namespace's values.
	byValue, _ := instance(t, srv, tier.Options[profile]{Namespace: "ptr-" + t.Name()})
	byPtr, _ := instance(t, srv, tier.Options[*profile]{Namespace: "ptr-" + t.Name()})
	require.NoError(t, byPtr.Set(t.Context(), "p", &profile{ID: 8}, time.Hour))
	p, err := byValue.Get(t.Context(), "p")
	require.NoError(t, err)
	require.EqualValues(t, 8, p.ID)
	require.Zero(t, byValue.Stats().DecodeErrors)
}

// Errors name a key by the hash the observer sees, unless ObserveRawKeys.
func TestCache_ErrorsHideRawKeys(t *testing.T) {
	t.Parallel()
	const key = "profile:ann@example.com"
	failing := func(context.Context, string) (string, error) { return "", errors.New("db down") }
	tests := []struct {
		name string
		raw  bool
	}{{name: "hashed"}, {name: "raw", raw: true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			c := newCache(t, &tier.Options[string]{Observer: rec, ObserveRawKeys: tt.raw, KeyHashSecret: []byte("s")})
			_, loadErr := c.GetOrLoad(t.Context(), key, failing)
			require.Error(t, loadErr)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, ctxErr := c.GetOrLoad(ctx, key, failing)
			require.ErrorIs(t, ctxErr, context.Canceled)
			_, manyErr := c.GetOrLoadMany(t.Context(), []string{key}, func(context.Context, []string) (map[string]string, error) {
				return nil, errors.New("db down")
			})
			require.Error(t, manyErr)
			var hashed string
			for _, e := range rec.Events() {
				if e.Key != "" {
					hashed = e.Key
				}
			}
			require.NotEmpty(t, hashed, "the observer heard of the key")
			for _, err := range []error{loadErr, ctxErr, manyErr} {
				if tt.raw {
					require.ErrorContains(t, err, `"`+key+`"`)
					continue
				}
				require.NotContains(t, err.Error(), "ann@example.com")
				require.ErrorContains(t, err, "key#"+hashed, "the error names the key as the telemetry does")
			}
		})
	}
}

// A call whose context has already ended starts nothing: no load, no L2
// read or write, and its error says why.
func TestCache_EndedContextStartsNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, rdb := instance(t, srv, tier.Options[string]{})
	var loads atomic.Int64
	load := counted(&loads, func(_ context.Context, key string) (string, error) { return "v:" + key, nil })
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		loads.Add(1)
		return map[string]string{keys[0]: "v"}, nil
	}
	require.NoError(t, c.Set(t.Context(), "present", "old", time.Hour))
	l2Before := c.Stats()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.GetOrLoad(ctx, "k", load)
	require.ErrorIs(t, err, context.Canceled)
	_, err = c.Get(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	_, err = c.GetOrLoadTagged(ctx, "k", []string{"t"}, load)
	require.ErrorIs(t, err, context.Canceled)
	got, err := c.GetOrLoadMany(ctx, []string{"k", "k2"}, loadMany)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, got)
	require.ErrorIs(t, c.Set(ctx, "k", "new", time.Hour), context.Canceled)
	require.ErrorIs(t, c.Delete(ctx, "present"), context.Canceled)
	require.ErrorIs(t, c.InvalidateTags(ctx, "t"), context.Canceled)
	require.ErrorIs(t, c.InvalidateAll(ctx), context.Canceled)

	require.Zero(t, loads.Load(), "no load started")
	n, err := rdb.Exists(t.Context(), c.Key("k"), c.Key("k2")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "nothing written to L2")
	v, err := rdb.Get(t.Context(), c.Key("present")).Bytes()
	require.NoError(t, err)
	require.NotEmpty(t, v, "the Delete did not reach L2")
	after := c.Stats()
	require.Equal(t, l2Before.Misses, after.Misses, "no read began")
	require.Equal(t, l2Before.L2Hits, after.L2Hits)
	require.Zero(t, after.PendingInvalidations)
	got2, ok := c.GetIfPresent("present")
	require.True(t, ok, "L1 untouched by the ended Delete and InvalidateAll")
	require.Equal(t, "old", got2)
}

// The scenario: 4 MiB in tier.Options, the backend at its 1 MiB
// default, a 2 MiB value: written, refused by every reader, deleted and
// reloaded (4 loads for a write and three reads). New now refuses the
// contradiction, and with the limit set once (on the backend) the value is
// loaded once.
func TestNew_MaxValueBytesFromBackend(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := "big-" + t.Name()
	_, err := tier.New(&tier.Options[string]{Namespace: ns, L2: goredis.Must(srv.Client(t), nil), MaxValueBytes: 4 << 20})
	require.ErrorIs(t, err, tier.ErrInvalidOptions)
	require.ErrorContains(t, err, "above the L2's limit")

	big := strings.Repeat("x", 2<<20)
	var loads atomic.Int64
	load := counted(&loads, func(context.Context, string) (string, error) { return big, nil })
	inst := func() *tier.Cache[string] {
		l2 := goredis.Must(srv.Client(t), &goredis.Options{MaxValueBytes: 4 << 20})
		return newCache(t, &tier.Options[string]{Namespace: ns, L2: l2, L2Timeout: 5 * time.Second})
	}
	writer := inst()
	v, err := writer.GetOrLoad(t.Context(), "big", load)
	require.NoError(t, err)
	require.Len(t, v, len(big))
	rdb := srv.Client(t)
	require.Eventually(t, func() bool { // the flight writes L2 after answering
		n, err := rdb.StrLen(t.Context(), writer.Key("big")).Result()
		return err == nil && n > int64(len(big))
	}, 10*time.Second, 5*time.Millisecond)
	for range 3 {
		r := inst()
		v, err := r.GetOrLoad(t.Context(), "big", load)
		require.NoError(t, err)
		require.Len(t, v, len(big))
		require.Zero(t, r.Stats().DecodeErrors)
		require.EqualValues(t, 1, r.Stats().L2Hits)
	}
	require.EqualValues(t, 1, loads.Load(), "one load for a write and three reads")
}

// Without a KeyHashSecret, a key hashes the same in every cache of a
// namespace (instances, restarts), and differently in another namespace
// or under a secret.
func TestCache_KeyHashStableAcrossInstances(t *testing.T) {
	t.Parallel()
	hashOf := func(o tier.Options[string]) string {
		rec := &recorder{}
		o.Observer = rec
		c := newCache(t, &o)
		_, err := c.Get(t.Context(), "user:ann@example.com")
		require.ErrorIs(t, err, tier.ErrNotFound)
		require.NoError(t, c.Close()) // a restart: the next cache is a new one
		for _, e := range rec.Events() {
			if e.Kind == tier.EventMiss {
				require.Len(t, e.Key, 16)
				return e.Key
			}
		}
		t.Fatal("no miss event")
		return ""
	}
	a := hashOf(tier.Options[string]{Namespace: "profiles"})
	require.Equal(t, a, hashOf(tier.Options[string]{Namespace: "profiles"}), "same namespace, same hash")
	require.NotEqual(t, a, hashOf(tier.Options[string]{Namespace: "orders"}))
	require.NotEqual(t, a, hashOf(tier.Options[string]{Namespace: "profiles", KeyHashSecret: []byte("secret")}))
	require.NotContains(t, a, "ann")
}
