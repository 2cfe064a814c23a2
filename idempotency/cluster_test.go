package idempotency_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestCluster: on a Redis Cluster (3 masters, 3 replicas) records of many
// keys spread over the masters (one slot each), every script runs, one key
// on two instances runs once, and the eviction check asks every master.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node cluster; run without -short")
	}
	t.Parallel()
	c := redistest.StartCluster(t, nil)
	rdb := c.Client(t)
	s1, _ := newStore(t, rdb, nil)
	s2, _ := newStore(t, rdb, nil)
	ctx := t.Context()

	var runs atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		a, _ := idempotency.FromContext(r.Context())
		if err := a.Checkpoint(r.Context(), "half"); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = fmt.Fprintf(w, "done %s", r.URL.Path)
	})
	h1 := newMiddleware(t, s1, nil).Wrap(handler)
	h2 := newMiddleware(t, s2, nil).Wrap(handler)

	const keys = 60
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			key := fmt.Sprintf("cluster-key-%d", i)
			r := do(t, h1, "POST", "/k/"+key, key, nil)
			if r.status != http.StatusOK {
				t.Errorf("%s: %d %s", key, r.status, r.body)
				return
			}
			r2 := do(t, h2, "POST", "/k/"+key, key, nil)
			if string(r2.body) != string(r.body) || r2.header.Get(idempotency.HeaderReplayed) != "true" {
				t.Errorf("%s: replay %d %q", key, r2.status, r2.body)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(keys), runs.Load())

	// The records landed on every master.
	masters := map[string]bool{}
	for _, m := range c.Masters() {
		n, err := m.Client(t).DBSize(ctx).Result()
		require.NoError(t, err)
		if n > 0 {
			masters[m.Addr()] = true
		}
	}
	require.Len(t, masters, 3)

	// Takeover and a stale owner, on the cluster.
	a, err := s1.Begin(ctx, "", "takeover", nil)
	require.NoError(t, err)
	idempotency.SetClockOffset(s2, idempotency.DefaultLease*2)
	b, err := s2.Begin(ctx, "", "takeover", nil)
	require.NoError(t, err)
	require.Equal(t, idempotency.OutcomeTakenOver, b.Outcome)
	require.ErrorIs(t, a.Attempt.Complete(ctx, idempotency.Result{Status: 200}), idempotency.ErrLeaseLost)
	require.NoError(t, b.Attempt.Complete(ctx, idempotency.Result{Status: 201}))
	require.NoError(t, b.Attempt.Fail(ctx))

	// One master with an evicting policy is enough to refuse.
	m := c.Masters()[1]
	require.NoError(t, m.Client(t).ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err())
	_, err = idempotency.New(ctx, &idempotency.Options{Client: rdb})
	require.ErrorIs(t, err, idempotency.ErrEvictingRedis)
	require.Contains(t, err.Error(), m.Addr())
}
