package goredis_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/obstest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// TestMain checks for leaked goroutines. It lives here because this is the
// package's only test file; move it to main_test.go when another arrives.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// ristretto's Close does not wait for its background goroutines.
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		// go-redis pool reapers exit asynchronously after Client.Close.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		// A pool whose server was killed for good probes it once a second
		// and exits at the next probe after Client.Close.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
		// ClusterClient.ReloadState reloads on a goroutine that waits out a
		// 200 ms cool-down before it exits.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9.(*clusterStateHolder).LazyReload.func1"),
	)
}

// tenantACL is the least-privilege Redis 7 user for one cache namespace
// ("tenantA") with its invalidation bus, as given to ACL SETUSER. It grants:
//
//   - keys: the namespace's values "tc:7:tenantA:*" (every epoch), its tag
//     times "tc:7:tenantA#t:*" and its epoch counter "tc:7:tenantA#epoch"
//     ("tc:<len(namespace)>:<namespace>", see tier.Cache.Key and TagKey);
//   - one channel, invalidate.Channel("tenantA"); Redis 7 grants no channel
//     by default (acl-pubsub-default resetchannels);
//   - commands: GETRANGE (reads, at most MaxValueBytes+1 bytes of a value),
//     SET and DEL (writes), EVALSHA and EVAL (the lease, fenced-write and
//     tag-time Lua scripts; go-redis falls back to EVAL on NOSCRIPT, and
//     the scripts call GETRANGE, SET, GET, DEL, PTTL, RENAME and PEXPIRE),
//     RENAME and PEXPIRE (a load's value, stored under a side key next to
//     the key, is renamed over it and given its TTL; added 2026-12-06: a
//     user without them gets every L2 write refused), PTTL (a lease marker found by
//     Lease must have a TTL a live lease can have), GET (tag times and the
//     epoch), INCR (InvalidateAll), INFO (the cache's lineage check: run_id
//     and replication id, to notice a failover; see tier.Lineager), and
//     PUBLISH, SUBSCRIBE and UNSUBSCRIBE (invalidate.Bus). go-redis's HELLO
//     with AUTH needs no grant.
//
// Nothing in the list can be dropped: TestBackend_LeastPrivilegeACL shows
// that the cache's work is refused without each one.
//
// NOTE: on Redis 7.2 and later go-redis also sends CLIENT SETINFO when it
// connects; the user is refused it, which is harmless (go-redis ignores the
// reply) but lands in ACL LOG. Add +client|setinfo, or set the client's
// DisableIdentity, to keep the log clean.
const tenantACL = "tc on >tc-secret resetkeys ~tc:7:tenantA:* ~tc:7:tenantA#t:* ~tc:7:tenantA#epoch " +
	"resetchannels &tc:7:tenantA#inv " +
	"-@all +getrange +get +set +del +rename +pexpire +pttl +evalsha +eval +incr +info +publish +subscribe +unsubscribe"

// setUser runs ACL SETUSER with acl (reset first, so a shorter list really
// takes commands away) and clears ACL LOG.
func setUser(t *testing.T, admin *redis.Client, acl string) {
	t.Helper()
	args := []any{"ACL", "SETUSER"}
	for i, f := range strings.Fields(acl) {
		args = append(args, f)
		if i == 0 {
			args = append(args, "reset")
		}
	}
	// Not t.Context(): setUser also runs in t.Cleanup, after it is done.
	require.NoError(t, admin.Do(context.Background(), args...).Err())
	require.NoError(t, admin.Do(context.Background(), "ACL", "LOG", "RESET").Err())
}

// denials returns what ACL LOG recorded as "reason object" ("command
// getrange", "key tc:7:tenantB:0:k", "channel …"), without go-redis's
// harmless CLIENT SETINFO.
func denials(t *testing.T, admin *redis.Client) []string {
	t.Helper()
	entries, err := admin.Do(t.Context(), "ACL", "LOG", "128").Slice()
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		var reason, object any
		switch m := e.(type) {
		case map[any]any: // RESP3
			reason, object = m["reason"], m["object"]
		case []any: // RESP2: a flat list of fields and values
			for i := 0; i+1 < len(m); i += 2 {
				switch m[i] {
				case "reason":
					reason = m[i+1]
				case "object":
					object = m[i+1]
				}
			}
		}
		if s := fmt.Sprint(reason, " ", object); !strings.HasPrefix(s, "command client|setinfo") {
			out = append(out, s)
		}
	}
	return out
}

// userClient returns a client that logs in as the ACL user "tc".
func userClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	o := srv.Options()
	o.Username, o.Password = "tc", "tc-secret"
	o.ContextTimeoutEnabled = true // goredis requires it
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// instance is one application instance under the ACL user: a cache of
// namespace ns and, if withBus, an invalidate.Bus, each on its own
// connection. With a bus, it waits until Redis has answered the bus's
// SUBSCRIBE: confirmed, or refused when the user lacks the grant.
func instance(t *testing.T, srv *redistest.Server, ns string, withBus bool) (*tier.Cache[string], *invalidate.Bus) {
	t.Helper()
	ev := &obstest.Recorder{}
	o := &tier.Options[string]{
		Namespace: ns, L2: goredis.Must(userClient(t, srv), nil), Observer: ev,
		L2Timeout: 5 * time.Second, TTL: time.Hour,
	}
	var bus *invalidate.Bus
	if withBus {
		bus = invalidate.Must(userClient(t, srv), &invalidate.Options{Heartbeat: 50 * time.Millisecond})
		o.Invalidator = bus
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- bus.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	c, err := tier.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) }) // runs before the bus stops
	if withBus {
		require.Eventually(t, func() bool { return ev.Dropped("subscribed") > 0 || ev.Dropped("subscribe_refused") > 0 },
			10*time.Second, time.Millisecond, "Redis answered the bus's SUBSCRIBE")
	}
	return c, bus
}

// exercise does everything the cache and the bus send to Redis, as one
// instance of namespace "tenantA": a miss (GETRANGE, the lease, its
// leased write), a tagged read (GETRANGE and GET in a pipeline), Set,
// Delete, InvalidateTags (the tag script and PUBLISH), InvalidateAll
// (INCR), a lease that finds another instance's marker (its PTTL), and the
// bus's SUBSCRIBE, heartbeats and UNSUBSCRIBE. It returns the errors the
// calls returned.
func exercise(t *testing.T, srv *redistest.Server) []error {
	t.Helper()
	c, _ := instance(t, srv, "tenantA", true)
	load := func(_ context.Context, key string) (string, error) { return "v:" + key, nil }
	var errs []error
	keep := func(op string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", op, err))
		}
	}
	_, err := c.GetOrLoad(t.Context(), "k1", load)
	keep("GetOrLoad", err)
	_, err = c.GetOrLoadTagged(t.Context(), "k2", []string{"expert:1"}, load)
	keep("GetOrLoadTagged", err)
	keep("Set", c.Set(t.Context(), "k3", "x", 0))
	keep("Delete", c.Delete(t.Context(), "k3"))
	keep("InvalidateTags", c.InvalidateTags(t.Context(), "expert:1"))
	keep("InvalidateAll", c.InvalidateAll(t.Context()))
	// A miss that finds another instance's lease reads the marker's TTL.
	be, full := goredis.Must(userClient(t, srv), nil), c.Key("leased")
	_, err = be.Lease(t.Context(), full, tier.LeasePrefix+"other", time.Minute, false)
	keep("Lease", err)
	cur, err := be.Lease(t.Context(), full, tier.LeasePrefix+"ours", time.Minute, false)
	keep("Lease of a leased key", err)
	if err == nil && string(cur) != tier.LeasePrefix+"other" {
		errs = append(errs, fmt.Errorf("Lease of a leased key found %q", cur))
	}
	keep("Close", c.Close()) // unsubscribes
	if s := c.Stats(); s.L2Errors > 0 || s.Fallbacks > 0 {
		errs = append(errs, fmt.Errorf("L2 errors %d, fallbacks %d", s.L2Errors, s.Fallbacks))
	}
	return errs
}

// TestBackend_LeastPrivilegeACL: the cache and the invalidation bus work
// under tenantACL; a cache of another namespace under the same user gets
// NOPERM, as an error matching tier.ErrL2 from writes and as counted L2
// errors (with the origin answering) on reads; and each grant is needed.
func TestBackend_LeastPrivilegeACL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	setUser(t, admin, tenantACL)

	t.Run("own namespace", func(t *testing.T) {
		a, busA := instance(t, srv, "tenantA", true)
		b, _ := instance(t, srv, "tenantA", true)
		var loads atomic.Int64
		load := func(_ context.Context, key string) (string, error) { loads.Add(1); return "v:" + key, nil }

		v, err := a.GetOrLoad(t.Context(), "user:1", load)
		require.NoError(t, err)
		require.Equal(t, "v:user:1", v)
		require.Eventually(t, func() bool { // A writes L2 after answering
			v, err := b.Get(context.Background(), "user:1")
			return err == nil && v == "v:user:1"
		}, 5*time.Second, 5*time.Millisecond)
		require.EqualValues(t, 1, loads.Load())
		require.EqualValues(t, 1, b.Stats().L2Hits, "B read A's value from Redis")

		_, err = a.GetOrLoadTagged(t.Context(), "expert:1:day", []string{"expert:1"}, load)
		require.NoError(t, err)
		require.NoError(t, a.InvalidateTags(t.Context(), "expert:1"))
		require.NoError(t, a.Set(t.Context(), "user:2", "set", 0))
		v, err = b.Get(t.Context(), "user:2")
		require.NoError(t, err)
		require.Equal(t, "set", v)

		require.NoError(t, a.Delete(t.Context(), "user:1"))
		require.Zero(t, admin.Exists(t.Context(), a.Key("user:1")).Val(), "deleted from Redis")
		require.Eventually(t, func() bool { // the bus told B
			_, ok := b.GetIfPresent("user:1")
			return !ok
		}, 5*time.Second, time.Millisecond, "B dropped its copy")
		require.NoError(t, a.InvalidateAll(t.Context()))

		require.Zero(t, a.Stats().L2Errors)
		require.Zero(t, b.Stats().L2Errors)
		require.Zero(t, busA.Stats().SendErrors)
		require.Empty(t, denials(t, admin), "Redis refused nothing")
	})

	t.Run("another namespace", func(t *testing.T) {
		c, _ := instance(t, srv, "tenantB", false)
		setErr := c.Set(t.Context(), "k", "v", 0)
		delErr := c.Delete(t.Context(), "k")
		v, getErr := c.GetOrLoad(t.Context(), "k2", func(context.Context, string) (string, error) { return "origin", nil })
		refused := denials(t, admin)
		t.Logf("Set: %v; Delete: %v; GetOrLoad: %q, %v; L2 errors %d; Redis refused %v", setErr, delErr, v, getErr, c.Stats().L2Errors, refused)
		for _, err := range []error{setErr, delErr} {
			require.ErrorIs(t, err, tier.ErrL2)
			require.ErrorContains(t, err, "NOPERM")
		}
		require.NoError(t, getErr)
		require.Equal(t, "origin", v, "reads fall back to the origin")
		require.Positive(t, c.Stats().L2Errors, "and the refusal is counted")
		require.NotEmpty(t, refused)
		for _, d := range refused {
			require.NotContains(t, d, "tenantA", "only tenantB's keys were refused")
		}
	})

	t.Run("every grant is needed", func(t *testing.T) {
		require.Empty(t, exercise(t, srv), "the full ACL allows everything")
		fields := strings.Fields(tenantACL)
		for i, f := range fields {
			if !strings.HasPrefix(f, "+") {
				continue
			}
			t.Run(f[1:], func(t *testing.T) {
				setUser(t, admin, strings.Join(append(append([]string(nil), fields[:i]...), fields[i+1:]...), " "))
				t.Cleanup(func() { setUser(t, admin, tenantACL) })
				errs := exercise(t, srv)
				refused := denials(t, admin)
				t.Logf("without %s: %d errors, refused %v", f[1:], len(errs), refused)
				require.Contains(t, refused, "command "+f[1:], "the cache needed it")
			})
		}
	})
}
