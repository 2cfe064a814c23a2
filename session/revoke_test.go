package session_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/session"
)

// loginAll creates n sessions for user on a, and reads each once on b so
// that b holds them in L1.
func loginAll(t *testing.T, a, b *node, user string, n int) []string {
	t.Helper()
	ctx := t.Context()
	var toks []string
	for i := range n {
		tok, err := a.m.Create(ctx, user, session.Client{Device: fmt.Sprint("device-", i)}, map[string]string{"i": fmt.Sprint(i)})
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	for _, tok := range toks {
		inL1(t, b, tok)
	}
	return toks
}

// inL1 reads tok on n until n serves it from L1.
func inL1(t *testing.T, n *node, tok string) {
	t.Helper()
	ctx := t.Context()
	_, err := n.m.Get(ctx, tok)
	require.NoError(t, err)
	// n's copy is in L1: the next read is a hit.
	require.Eventually(t, func() bool {
		before := n.m.Stats().L1Reads
		_, err := n.m.Get(ctx, tok)
		return err == nil && n.m.Stats().L1Reads > before
	}, 5*time.Second, time.Millisecond)
}

// A logout whose client goes away once Redis has ended the session (its
// request's context is cancelled: here, by the observer of EventRevoked)
// still ends it in every L1. Before, the L1 drop ran on the cancelled
// context: it did nothing, and both instances served the session from L1
// for up to L1TTL.
func TestManager_Revoke_clientGoneAfterRedis(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t, nodeOpts{o: session.Options{L1TTL: time.Hour}})
	tok := loginAll(t, a, b, "user:1", 1)[0]
	inL1(t, a, tok)
	received := b.bus.Stats().KeysDropped

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a.ev.onEvent(func(ev session.Event) {
		if ev.Kind == session.EventRevoked {
			cancel()
		}
	})
	require.NoError(t, a.m.Revoke(ctx, tok))
	require.Error(t, ctx.Err(), "the client went away during the revoke")
	_, err := a.m.Get(t.Context(), tok)
	require.ErrorIs(t, err, session.ErrNotFound, "A refuses at once")
	require.Eventually(t, func() bool { return b.bus.Stats().KeysDropped > received }, 5*time.Second, time.Millisecond, "B heard the revoke")
	_, err = b.m.Get(t.Context(), tok)
	require.ErrorIs(t, err, session.ErrNotFound)
}

// A logout whose reply is lost after Redis ended the session (A's link to
// Redis is slower than Options.Timeout: the script runs after A gave up)
// fails with ErrUnavailable, yet no instance keeps the session in L1: the
// sessions a failed write names are dropped all the same. Before, both
// instances served it from L1, and a retry (which finds it gone) dropped
// nothing either.
func TestManager_Revoke_replyLost(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	p := faultproxy.New(t, srv.Addr())
	o := nodeOpts{o: session.Options{L1TTL: time.Hour, Timeout: 300 * time.Millisecond}}
	a := newNode(t, newClient(t, srv.Options(), p.Addr()), newClient(t, srv.Options(), ""), o)
	b := newNode(t, newClient(t, srv.Options(), ""), newClient(t, srv.Options(), ""), o)
	ctx := t.Context()
	// A loads the revoke script before its link slows down (EVALSHA must
	// not come back NOSCRIPT).
	warm := loginAll(t, a, b, "user:0", 1)[0]
	require.NoError(t, a.m.Revoke(ctx, warm))
	tok := loginAll(t, a, b, "user:1", 1)[0]
	inL1(t, a, tok)
	received := b.bus.Stats().KeysDropped

	p.SetLatency(time.Second)
	err := a.m.Revoke(ctx, tok)
	require.ErrorIs(t, err, session.ErrUnavailable)
	require.Eventually(t, func() bool {
		list, err := b.m.List(ctx, "user:1")
		return err == nil && len(list) == 0
	}, 10*time.Second, time.Millisecond, "the revoke reached Redis after A gave up")
	p.SetLatency(0)
	_, err = a.m.Get(ctx, tok)
	require.ErrorIs(t, err, session.ErrNotFound, "A does not serve its L1 copy")
	require.Eventually(t, func() bool { return b.bus.Stats().KeysDropped > received }, 5*time.Second, time.Millisecond, "B heard the drop")
	_, err = b.m.Get(ctx, tok)
	require.ErrorIs(t, err, session.ErrNotFound, "B does not serve its L1 copy")
	require.NoError(t, a.m.Revoke(ctx, tok), "a retry finds it gone")
}

// TestManager_RevokeAll_twoInstances: after RevokeAll returns on A, B
// refuses every session of the user once the bus has delivered, although
// its L1 copies would live for an hour; another user's sessions go on.
func TestManager_RevokeAll_twoInstances(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t, nodeOpts{o: session.Options{L1TTL: time.Hour}})
	ctx := t.Context()
	toks := loginAll(t, a, b, "user:1", 5)
	others := loginAll(t, a, b, "user:2", 1)
	received := b.bus.Stats().KeysDropped

	n, err := a.m.RevokeAll(ctx, "user:1")
	require.NoError(t, err)
	require.Equal(t, 5, n)
	for _, tok := range toks {
		_, err := a.m.Get(ctx, tok)
		require.ErrorIs(t, err, session.ErrNotFound, "A refuses at once")
	}
	require.Eventually(t, func() bool { return b.bus.Stats().KeysDropped >= received+5 }, 5*time.Second, time.Millisecond, "B heard the revoke")
	for _, tok := range toks {
		_, err := b.m.Get(ctx, tok)
		require.ErrorIs(t, err, session.ErrNotFound, "B refuses once the bus delivered")
	}
	_, err = b.m.Get(ctx, others[0])
	require.NoError(t, err)
	list, err := b.m.List(ctx, "user:1")
	require.NoError(t, err)
	require.Empty(t, list)
	ev := a.ev.of(session.EventRevoked)
	require.Len(t, ev, 1)
	require.Equal(t, 5, ev[0].Count)
}

// TestManager_RevokeAll_busBlackholed: B's bus link dies silently (no
// reset, no error: a blackhole) before the revoke, so the invalidation
// never reaches B. B must still stop serving the revoked sessions: its bus
// notices the silence, and from then on its cache serves no L1 entry older
// than StaleBound; the next read goes to Redis, which says they are gone.
func TestManager_RevokeAll_busBlackholed(t *testing.T) {
	if testing.Short() {
		t.Skip("long fault test; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	p := faultproxy.New(t, srv.Addr())
	const staleBound = 300 * time.Millisecond
	o := nodeOpts{staleBound: staleBound, o: session.Options{L1TTL: time.Hour}}
	a := newNode(t, newClient(t, srv.Options(), ""), newClient(t, srv.Options(), ""), o)
	b := newNode(t, newClient(t, srv.Options(), ""), newClient(t, srv.Options(), p.Addr()), o)
	ctx := t.Context()
	toks := loginAll(t, a, b, "user:1", 3)
	keep := loginAll(t, a, b, "user:2", 1)[0]
	require.NoError(t, b.bus.Ready(ctx))
	dropsBefore := b.rec.Dropped("bus_down") + b.rec.Dropped("subscribed")
	received := b.bus.Stats().Received

	p.Blackhole()
	n, err := a.m.RevokeAll(ctx, "user:1")
	require.NoError(t, err)
	require.Equal(t, 3, n)
	start := time.Now()
	for _, tok := range toks {
		require.Eventually(t, func() bool {
			_, err := b.m.Get(ctx, tok)
			return err != nil
		}, 10*time.Second, time.Millisecond)
		_, err := b.m.Get(ctx, tok)
		require.ErrorIs(t, err, session.ErrNotFound, "refused because Redis says so, not because Redis is unreachable")
	}
	t.Logf("B refused the revoked sessions %v after the revoke (StaleBound %v, DeadAfter %v)", time.Since(start), staleBound, 3*heartbeat)
	require.Equal(t, received, b.bus.Stats().Received, "the revoke never reached B through the bus")
	// On a loaded machine B's bus may also have found its link silent and
	// subscribed again before the revoke (a late heartbeat): either way B
	// stopped trusting L1 on its bus's word, not on a message.
	require.Greater(t, b.rec.Dropped("bus_down")+b.rec.Dropped("subscribed"), dropsBefore, "B's cache was put under the StaleBound limit")
	_, err = b.m.Get(ctx, keep)
	require.NoError(t, err, "a live session is read again from Redis and served")

	// The link heals: B subscribes again and hears invalidations again.
	p.Heal()
	require.Eventually(t, func() bool { return b.rec.Dropped("subscribed") > 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, a.m.Revoke(ctx, keep))
	require.Eventually(t, func() bool {
		_, err := b.m.Get(ctx, keep)
		return err != nil
	}, 5*time.Second, time.Millisecond)
}

// TestManager_Update_concurrentFields: two instances change different
// fields of one session at the same time, 1,000 rounds: both changes land
// every time (the whole-session write of other stores loses one).
func TestManager_Update_concurrentFields(t *testing.T) {
	t.Parallel()
	srv, a, b := twoNodes(t, nodeOpts{})
	ctx := t.Context()
	tok, err := a.m.Create(ctx, "user:1", session.Client{}, map[string]string{"cart": "0", "theme": "0"})
	require.NoError(t, err)
	rdb := srv.Client(t)
	key := sessionKey(t, rdb, "sess")
	const rounds = 1000
	for i := 1; i <= rounds; i++ {
		var wg sync.WaitGroup
		var errA, errB error
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, errA = a.m.Update(ctx, tok, session.Update{Set: map[string]string{"cart": fmt.Sprint(i)}})
		}()
		go func() {
			defer wg.Done()
			<-start
			_, errB = b.m.Update(ctx, tok, session.Update{Set: map[string]string{"theme": fmt.Sprint(i)}})
		}()
		close(start)
		wg.Wait()
		for _, err := range []error{errA, errB} {
			if err != nil {
				// The change is made in Redis; only its invalidation waits
				// for replay (a publish slower than its timeout on a loaded
				// machine). Anything else fails the round.
				require.ErrorIs(t, err, session.ErrNotPropagated)
			}
		}
		got, err := rdb.HMGet(ctx, key, "cart", "theme").Result()
		require.NoError(t, err)
		require.Equal(t, []any{fmt.Sprint(i), fmt.Sprint(i)}, got, "round %d", i)
	}
	require.Eventually(t, func() bool {
		s, err := a.m.Get(ctx, tok)
		return err == nil && s.Version() == 1+2*rounds
	}, 5*time.Second, time.Millisecond, "A's L1 reflects B's last change once the bus delivered")

	// With IfVersion, two writers of the same version: exactly one wins.
	for range 50 {
		v, err := rdb.HGet(ctx, key, "_v").Uint64()
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, n := range []*node{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[j] = n.m.Update(ctx, tok, session.Update{Set: map[string]string{"balance": fmt.Sprint(j)}, IfVersion: v})
			}()
		}
		wg.Wait()
		require.True(t, (errs[0] == nil) != (errs[1] == nil), "exactly one wins: %v", errs)
		for _, e := range errs {
			if e != nil {
				require.ErrorIs(t, e, session.ErrConflict)
			}
		}
	}
}

// sessionKey returns the only session key in Redis under ns.
func sessionKey(t *testing.T, rdb *redis.Client, ns string) string {
	t.Helper()
	ks, err := rdb.Keys(t.Context(), ns+":*:s:*").Result()
	require.NoError(t, err)
	require.Len(t, ks, 1)
	return ks[0]
}

// TestManager_Renew: the old token stops working everywhere; the new one
// carries every field, the activity record and the absolute deadline.
func TestManager_Renew(t *testing.T) {
	t.Parallel()
	srv, a, b := twoNodes(t, nodeOpts{o: session.Options{L1TTL: time.Hour}})
	ctx := t.Context()
	fields := map[string]string{"role": "client", "cart": "3", "lang": "fr"}
	old, err := a.m.Create(ctx, "user:1", session.Client{Device: "phone", IP: "192.0.2.1"}, fields)
	require.NoError(t, err)
	_, err = a.m.Update(ctx, old, session.Update{Set: map[string]string{"step": "2fa"}})
	require.NoError(t, err)
	before, err := b.m.Get(ctx, old)
	require.NoError(t, err)

	next, err := a.m.Renew(ctx, old)
	require.NoError(t, err)
	require.NotEqual(t, old, next)
	_, err = a.m.Get(ctx, old)
	require.ErrorIs(t, err, session.ErrNotFound, "A refuses the old token at once")
	require.Eventually(t, func() bool {
		_, err := b.m.Get(ctx, old)
		return err != nil
	}, 5*time.Second, time.Millisecond, "B refuses the old token once the bus delivered")
	_, err = b.m.Get(ctx, old)
	require.ErrorIs(t, err, session.ErrNotFound)

	for _, n := range []*node{a, b} {
		s, err := n.m.Get(ctx, next)
		require.NoError(t, err)
		want := map[string]string{"role": "client", "cart": "3", "lang": "fr", "step": "2fa"}
		require.Equal(t, want, s.Values())
		require.Equal(t, "user:1", s.User())
		require.Equal(t, before.Created(), s.Created())
		require.Equal(t, before.AbsoluteDeadline(), s.AbsoluteDeadline(), "renewing does not extend the absolute timeout")
		require.Equal(t, before.Version(), s.Version())
		require.Equal(t, "phone", s.Device())
	}
	list, err := a.m.List(ctx, "user:1")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, a.m.Ref(next), list[0].Ref)
	n, err := srv.Client(t).Exists(ctx, "sess:{u:"+a.m.UserTag("user:1")+"}:s:"+a.m.Ref(old)).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the old key is gone")
	_, err = a.m.Renew(ctx, old)
	require.ErrorIs(t, err, session.ErrNotFound)
}

// TestManager_tokensNeverInRedis: no token, nor its secret part, appears
// in any Redis key or value, nor in any bus message, after every kind of
// operation.
func TestManager_tokensNeverInRedis(t *testing.T) {
	t.Parallel()
	srv, a, b := twoNodes(t, nodeOpts{o: session.Options{IdleTimeout: time.Second, TouchFraction: 0.01}})
	ctx := t.Context()
	rdb := srv.Client(t)
	ps := rdb.PSubscribe(ctx, "*")
	defer ps.Close()
	_, err := ps.Receive(ctx)
	require.NoError(t, err)
	var msgs []string
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel() {
			mu.Lock()
			msgs = append(msgs, m.Channel, m.Payload)
			mu.Unlock()
		}
	}()

	var toks []string
	for i := range 4 {
		tok, err := a.m.Create(ctx, fmt.Sprint("user:", i%2), session.Client{Device: "d", IP: "192.0.2.1"}, map[string]string{"k": "v"})
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	for _, tok := range toks {
		_, err := b.m.GetFrom(ctx, tok, "192.0.2.2")
		require.NoError(t, err)
	}
	// Activity later in the session: reads go on until one records it
	// (10 ms of the idle window after the last record, plus the read's
	// round trip, which a loaded machine makes long).
	var readErr error
	require.Eventually(t, func() bool {
		for _, tok := range toks {
			if _, readErr = b.m.GetFrom(ctx, tok, "192.0.2.2"); readErr != nil {
				return true
			}
		}
		return b.m.Stats().TouchWrites > 0
	}, 10*time.Second, 5*time.Millisecond, "a read records activity")
	require.NoError(t, readErr)
	require.NotZero(t, b.m.Stats().TouchWrites)
	_, err = a.m.Update(ctx, toks[0], session.Update{Set: map[string]string{"k": "w"}})
	require.NoError(t, err)
	renewed, err := a.m.Renew(ctx, toks[1])
	require.NoError(t, err)
	toks = append(toks, renewed)
	_, err = a.m.List(ctx, "user:0")
	require.NoError(t, err)
	require.NoError(t, a.m.Revoke(ctx, toks[2]))
	_, err = b.m.RevokeAll(ctx, "user:1")
	require.NoError(t, err)
	// The revoke's message has reached the test's subscription too once
	// B dropped its copy.
	require.Eventually(t, func() bool {
		_, err := b.m.Get(ctx, toks[3])
		return err != nil
	}, 5*time.Second, time.Millisecond)

	var corpus []string
	var cursor uint64
	for {
		ks, next, err := rdb.Scan(ctx, cursor, "*", 100).Result()
		require.NoError(t, err)
		for _, k := range ks {
			corpus = append(corpus, k)
			typ, err := rdb.Type(ctx, k).Result()
			require.NoError(t, err)
			switch typ {
			case "hash":
				kv, err := rdb.HGetAll(ctx, k).Result()
				require.NoError(t, err)
				for f, v := range kv {
					corpus = append(corpus, f, v)
				}
			case "string":
				v, err := rdb.Get(ctx, k).Result()
				require.NoError(t, err)
				corpus = append(corpus, v)
			default:
				t.Fatalf("unexpected key %q of type %s", k, typ)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	require.NotEmpty(t, corpus)
	require.NoError(t, ps.Close())
	<-done
	mu.Lock()
	corpus = append(corpus, msgs...)
	mu.Unlock()
	all := strings.Join(corpus, "\n")
	for _, tok := range toks {
		require.NotContains(t, all, tok)
		secretPart := tok[strings.LastIndexByte(tok, '.')+1:]
		require.Len(t, secretPart, 43)
		require.NotContains(t, all, secretPart, "the token's secret part")
		require.NotContains(t, all, secretPart[:22], "half the secret part")
	}
	require.Contains(t, all, a.m.Ref(toks[0]), "sessions are stored by ref")
}
