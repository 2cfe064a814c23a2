package notify_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/notify"
)

// The child consumer of TestConsumer_KilledMidBatch reads its settings
// from these variables.
const (
	envChildAddr = "NOTIFY_TEST_CHILD_ADDR"
	envChildNS   = "NOTIFY_TEST_CHILD_NS"
)

// Keys of the recording provider (on the test's own redis-server).
const (
	recKeys    = "provider:keys"    // hash: provider key → user \x00 item ids
	recCounts  = "provider:counts"  // hash: absorbed, conflicts
	recSignal  = "provider:stopped" // list: the child pushes once it is stuck in Send
	childSends = 4                  // the child's Send that never returns
)

// recordScript is the recording provider: it delivers a message whose key
// it has not seen and absorbs one whose key it has (a conflict if the
// items differ).
//
//	KEYS[1] recKeys   KEYS[2] recCounts   ARGV: key, user \x00 ids
var recordScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then
  redis.call('HINCRBY', KEYS[2], 'absorbed', 1)
  if prev ~= ARGV[2] then redis.call('HINCRBY', KEYS[2], 'conflicts', 1) end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// redisRecorder is a Sender that records into Redis, so that what a
// killed process sent survives it.
type redisRecorder struct {
	rdb redis.UniversalClient
	// after, if set, runs after a message was recorded, with the number of
	// sends so far.
	after func(ctx context.Context, n int64) error
	n     atomic.Int64
}

func (r *redisRecorder) Send(ctx context.Context, m notify.Message) error {
	ids := make([]string, len(m.Items))
	for i, it := range m.Items {
		ids[i] = it.ID
	}
	if err := recordScript.Run(ctx, r.rdb, []string{recKeys, recCounts}, m.IdempotencyKey, m.User+"\x00"+strings.Join(ids, ",")).Err(); err != nil {
		return err
	}
	n := r.n.Add(1)
	if r.after != nil {
		return r.after(ctx, n)
	}
	return nil
}

// TestConsumer_KilledMidBatch: the test binary re-executes itself as a
// child process running consumer A, whose provider records into Redis.
// A's fourth send is recorded by the provider, then A signals and blocks
// inside Send, before its XACK; the parent SIGKILLs it there, in the
// middle of a user's batch (that user's other entries read and pending in
// A's name). Consumer B, in the parent, takes the user over once A's lease
// has expired, XAUTOCLAIMs A's pending entries and finishes. Every
// notification is delivered, each under exactly one provider key; no
// provider key is delivered twice (the one digest A sent and B re-sent
// carries the same key and is absorbed), and no key carries other items.
func TestConsumer_KilledMidBatch(t *testing.T) {
	if addr := os.Getenv(envChildAddr); addr != "" {
		killedChild(t, addr, os.Getenv(envChildNS))
		return
	}
	if testing.Short() {
		t.Skip("runs a child process and kills it; run without -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const ns = "killed"
	opts := notify.Options{Namespace: ns, MaxItems: 5, MaxDelay: time.Hour, Shards: 4}
	q := newQueue(t, rdb, opts)
	var all []string
	for u := range 3 {
		for _, ch := range []notify.Channel{notify.Email, notify.SMS, notify.Push} {
			all = append(all, enqueueN(t, q, fmt.Sprint("user", u), ch, 20)...)
		}
	}

	// -test.timeout ends the child if this process dies before killing it.
	child := exec.Command(os.Args[0], "-test.run=^TestConsumer_KilledMidBatch$", "-test.count=1", "-test.timeout=2m")
	child.Env = append(os.Environ(), envChildAddr+"="+srv.Addr(), envChildNS+"="+ns)
	var out strings.Builder
	child.Stdout, child.Stderr = &out, &out
	require.NoError(t, child.Start())
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		<-exited
	})
	// Wait (blocking, no polling) until A is stuck in its fourth Send.
	got, err := rdb.BLPop(t.Context(), 60*time.Second, recSignal).Result()
	require.NoError(t, err, "child never reached its fourth send; its output:\n%s", out.String())
	require.Equal(t, []string{recSignal, "stuck"}, got)
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	err = <-exited
	exited <- err // for the cleanup
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output:\n%s", out.String())
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, ws.Signaled(), "child was not killed: %v\n%s", err, out.String())
	require.Equal(t, syscall.SIGKILL, ws.Signal())

	delivered := func() map[string]string {
		m, err := rdb.HGetAll(t.Context(), recKeys).Result()
		require.NoError(t, err)
		return m
	}
	require.Len(t, delivered(), childSends, "the provider has A's four digests")
	// Mid-batch: the digest A was killed in, at least, is pending in A's
	// name.
	streams, err := rdb.Keys(t.Context(), ns+":*:s").Result()
	require.NoError(t, err)
	var pendingA int64
	for _, s := range streams {
		p, err := rdb.XPending(t.Context(), s, "notify").Result()
		require.NoError(t, err)
		pendingA += p.Consumers["A"]
	}
	require.GreaterOrEqual(t, pendingA, int64(5), "A's unacknowledged digest is pending in its name")

	obs := &countObserver{}
	opts.Observer = obs
	qb := newQueue(t, rdb, opts)
	b := newConsumer(t, qb, notify.ConsumerOptions{Name: "B", Sender: &redisRecorder{rdb: rdb}, Lease: 500 * time.Millisecond})
	run(t, b)
	require.Eventually(t, func() bool { return len(delivered()) == len(all)/5 }, 30*time.Second, 10*time.Millisecond)

	byID := map[string][]string{}
	for key, v := range delivered() {
		user, ids, ok := strings.Cut(v, "\x00")
		require.True(t, ok)
		for _, id := range strings.Split(ids, ",") {
			byID[user+"/"+id] = append(byID[user+"/"+id], key)
		}
	}
	for _, id := range all {
		require.Len(t, byID[id], 1, "entry %s delivered under %d provider keys", id, len(byID[id]))
	}
	require.Len(t, byID, len(all), "only the queued notifications were delivered")
	counts, err := rdb.HGetAll(t.Context(), recCounts).Result()
	require.NoError(t, err)
	require.Equal(t, "1", counts["absorbed"], "the digest A was killed in is re-sent by B with the same key")
	require.Empty(t, counts["conflicts"], "no provider key carried other items")
	require.Positive(t, obs.n(notify.EventClaimed), "B reclaimed A's pending entries")
}

// killedChild is consumer A, in the child process: it consumes until its
// fourth send, which the provider records; then it signals the parent and
// blocks inside Send until it is killed.
func killedChild(t *testing.T, addr, ns string) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	q, err := notify.New(&notify.Options{Client: rdb, Namespace: ns, MaxItems: 5, MaxDelay: time.Hour, Shards: 4})
	require.NoError(t, err)
	rec := &redisRecorder{rdb: rdb, after: func(ctx context.Context, n int64) error {
		if n < childSends {
			return nil
		}
		if err := rdb.RPush(ctx, recSignal, "stuck").Err(); err != nil {
			return err
		}
		select {} // killed here, after the provider took the message, before XACK
	}}
	c, err := notify.NewConsumer(q, &notify.ConsumerOptions{Name: "A", Sender: rec, Lease: 500 * time.Millisecond, PollInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	err = c.Run(context.Background())
	t.Fatalf("consumer A returned (%v) instead of blocking in its fourth send", err)
}
