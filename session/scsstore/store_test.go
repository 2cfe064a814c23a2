package scsstore_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/obstest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/session/scsstore"
	"github.com/tiercache/tiercache/tier"
)

// scsStore and scsCtxStore are alexedwards/scs v2's Store and CtxStore,
// copied (this module does not import scs; the benchmarks module checks
// the Store against scs itself).
type scsStore interface {
	Delete(token string) (err error)
	Find(token string) (b []byte, found bool, err error)
	Commit(token string, b []byte, expiry time.Time) (err error)
}

type scsCtxStore interface {
	scsStore
	DeleteCtx(ctx context.Context, token string) (err error)
	FindCtx(ctx context.Context, token string) (b []byte, found bool, err error)
	CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) (err error)
}

var _ scsCtxStore = (*scsstore.Store)(nil)

var secret = []byte("scsstore-test-secret")

// node is one application instance: a Store with its own Redis client and
// bus.
type node struct {
	s   *scsstore.Store
	bus *invalidate.Bus
	rec *obstest.Recorder
}

func newNode(t *testing.T, srv *redistest.Server, ns string) *node {
	t.Helper()
	n := &node{rec: &obstest.Recorder{}}
	rdb, busClient := redis.NewClient(srv.Options()), redis.NewClient(srv.Options())
	t.Cleanup(func() { _ = rdb.Close(); _ = busClient.Close() })
	n.bus = invalidate.Must(busClient, &invalidate.Options{Heartbeat: 50 * time.Millisecond})
	n.s = scsstore.Must(&scsstore.Options{Client: rdb, Invalidator: n.bus, Secret: secret, Namespace: ns,
		L1TTL: time.Hour, Timeout: 5 * time.Second, CacheObserver: n.rec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.bus.Run(ctx) }()
	t.Cleanup(func() {
		require.NoError(t, n.s.Close())
		require.NoError(t, n.s.Close(), "Close is idempotent")
		cancel()
		require.NoError(t, <-done)
	})
	// The subscription's confirmation drops L1: wait for it.
	require.Eventually(t, func() bool { return n.rec.Dropped(tier.ReasonSubscribed) > 0 }, 10*time.Second, time.Millisecond)
	return n
}

// oneNode starts a redis-server and one instance on it, and returns the
// instance and a client of the server.
func oneNode(t *testing.T, ns string) (*node, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	return newNode(t, srv, ns), srv.Client(t)
}

// token returns a token as scs draws them (32 random bytes, base64url).
func token() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestNew_options(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	_, err := scsstore.New(nil)
	require.Error(t, err)
	_, err = scsstore.New(&scsstore.Options{Client: rdb, Secret: []byte("short")})
	require.ErrorIs(t, err, scsstore.ErrSecret)
	_, err = scsstore.New(&scsstore.Options{Client: rdb, Secret: secret, Timeout: -time.Second})
	require.Error(t, err)
}

// TestStore_twoInstances: a token committed on A is found on A (L1) and
// B (Redis, then L1); a new commit on A and a Delete on A reach B's L1
// through the bus; an unknown token is not found and is not an error.
func TestStore_twoInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, b := newNode(t, srv, "scs1"), newNode(t, srv, "scs1")
	tok := token()
	exp := time.Now().Add(time.Hour)

	v, found, err := a.s.Find(tok)
	require.NoError(t, err)
	require.False(t, found)
	require.Nil(t, v)
	v, found, err = a.s.Find("")
	require.NoError(t, err)
	require.False(t, found)
	require.Nil(t, v)

	require.NoError(t, a.s.Commit(tok, []byte("v1"), exp))
	for _, n := range []*node{a, b, b} {
		v, found, err := n.s.Find(tok)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, []byte("v1"), v)
	}
	// B holds v1 in L1 now (its next Find is an L1 hit).
	require.Eventually(t, func() bool {
		before := b.s.Cache().Stats().L1Hits
		_, _, err := b.s.Find(tok)
		return err == nil && b.s.Cache().Stats().L1Hits > before
	}, 5*time.Second, time.Millisecond)

	dropped := b.bus.Stats().KeysDropped
	require.NoError(t, a.s.CommitCtx(t.Context(), tok, []byte("v2"), exp))
	require.Eventually(t, func() bool { return b.bus.Stats().KeysDropped > dropped }, 5*time.Second, time.Millisecond, "B heard the commit")
	v, found, err = b.s.FindCtx(t.Context(), tok)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, []byte("v2"), v, "B reads the new commit, not its old copy")

	dropped = b.bus.Stats().KeysDropped
	require.NoError(t, a.s.Delete(tok))
	_, found, err = a.s.Find(tok)
	require.NoError(t, err)
	require.False(t, found, "A refuses at once")
	require.Eventually(t, func() bool { return b.bus.Stats().KeysDropped > dropped }, 5*time.Second, time.Millisecond, "B heard the delete")
	_, found, err = b.s.Find(tok)
	require.NoError(t, err)
	require.False(t, found, "B refuses once the bus delivered")
	require.NoError(t, b.s.DeleteCtx(t.Context(), tok), "deleting an unknown token is not an error")
}

// TestStore_expiry: Redis keeps a commit no longer than its expiry, and a
// commit whose expiry has passed deletes the token.
func TestStore_expiry(t *testing.T) {
	t.Parallel()
	a, rdb := oneNode(t, "scs2")
	ctx := t.Context()
	tok := token()
	ttl := 90 * time.Minute
	require.NoError(t, a.s.Commit(tok, []byte("v"), time.Now().Add(ttl)))
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	pttl, err := rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.Positive(t, pttl)
	require.LessOrEqual(t, pttl, ttl, "the key expires with the session, not later")

	require.NoError(t, a.s.Commit(tok, []byte("v"), time.Now().Add(-time.Second)))
	_, found, err := a.s.Find(tok)
	require.NoError(t, err)
	require.False(t, found)
	n, err := rdb.Exists(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.Zero(t, n, "an expired commit deletes the token in Redis")
}

// TestStore_tokenNeverInRedis: the raw token appears in no key and no
// value in Redis.
func TestStore_tokenNeverInRedis(t *testing.T) {
	t.Parallel()
	a, rdb := oneNode(t, "scs3")
	ctx := t.Context()
	toks := []string{token(), token(), token()}
	for _, tok := range toks {
		require.NoError(t, a.s.Commit(tok, []byte("data of "+tok[:4]), time.Now().Add(time.Hour)))
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, len(toks))
	for _, k := range keys {
		v, err := rdb.Get(ctx, k).Result()
		require.NoError(t, err)
		for _, tok := range toks {
			require.False(t, strings.Contains(k, tok), "key %q holds a token", k)
			require.False(t, strings.Contains(v, tok), "value of %q holds a token", k)
		}
	}
}

// TestStore_findDoesNotShareCommittedBytes: changing the slice given to
// Commit afterwards does not change what Find returns.
func TestStore_findDoesNotShareCommittedBytes(t *testing.T) {
	t.Parallel()
	a, _ := oneNode(t, "scs4")
	tok := token()
	b := []byte("abc")
	require.NoError(t, a.s.Commit(tok, b, time.Now().Add(time.Hour)))
	b[0] = 'X'
	v, found, err := a.s.Find(tok)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, []byte("abc"), v)
}
