package invalidate_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
)

// TestBus_Probe: on a healthy Sentinel set the probe never finds the
// subscription misplaced; behind something that sends PUBLISH and
// SUBSCRIBE to two different servers (a dialer here) it replaces the
// subscription twice, then gives up rather than drop L1 at every
// heartbeat; under an ACL that does not grant its channel, the bus goes
// without it rather than ask again.
func TestBus_Probe(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t, nil)
	master := s.Master()
	const hb = 20 * time.Millisecond
	// DeadAfter is long: no silence replaces a subscription here.
	o := &invalidate.Options{Heartbeat: hb, DeadAfter: time.Hour}
	heartbeats := func(t *testing.T, n int) {
		t.Helper()
		before := publishCalls(t, master)
		require.Eventually(t, func() bool { return publishCalls(t, master) >= before+n }, 10*time.Second, hb)
	}

	t.Run("in place", func(t *testing.T) {
		t.Parallel()
		m := startMember(t, s.Client(t), o, "a")
		heartbeats(t, 20)
		require.Zero(t, m.bus.Stats().Misplaced)
		require.Zero(t, m.bus.Stats().Reconnects)
	})

	t.Run("always misplaced", func(t *testing.T) {
		t.Parallel()
		elsewhere := redistest.Start(t)
		fo := s.FailoverOptions()
		fo.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if calledFromPubSub() {
				addr = elsewhere.Addr()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		client := redis.NewFailoverClient(fo)
		t.Cleanup(func() { _ = client.Close() })
		m := startMember(t, client, o, "a")
		require.Eventually(t, func() bool { return m.bus.Stats().Misplaced == 2 }, 10*time.Second, hb)
		heartbeats(t, 20)
		require.EqualValues(t, 2, m.bus.Stats().Misplaced, "the probe gave up")
		require.EqualValues(t, 2, m.bus.Stats().Reconnects)
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		ch := invalidate.Channel("r")
		admin := master.Client(t)
		require.NoError(t, admin.Do(t.Context(), "ACL", "SETUSER", "bus", "reset", "on", ">bus-secret",
			"resetchannels", "&"+ch, "-@all", "+publish", "+subscribe", "+unsubscribe").Err())
		fo := s.FailoverOptions()
		fo.Username, fo.Password = "bus", "bus-secret"
		client := redis.NewFailoverClient(fo)
		t.Cleanup(func() { _ = client.Close() })
		m := startMember(t, client, o, "r")
		require.NoError(t, m.bus.Ready(t.Context())) // the probe's answer came first
		probeDenials := func() int64 {
			var n int64
			for _, e := range admin.ACLLog(t.Context(), 100).Val() {
				if e.Username == "bus" {
					require.True(t, strings.HasPrefix(e.Object, "tc:probe:"), "only the probe is refused: %+v", e)
					n += e.Count
				}
			}
			return n
		}
		require.EqualValues(t, 1, probeDenials())
		heartbeats(t, 20)
		require.EqualValues(t, 1, probeDenials(), "not retried at each heartbeat")
		require.NoError(t, admin.Do(t.Context(), "CLIENT", "KILL", "USER", "bus").Err())
		m.sinks["r"].waitFor(t, 10*time.Second, "subscribed again", func() bool { return m.sinks["r"].untrusted("subscribed") == 2 })
		heartbeats(t, 20)
		// go-redis resubscribes a broken PubSub's channels on its own
		// before the bus replaces it: at most that one more denial; the
		// bus's new subscription does not ask for the probe again.
		require.LessOrEqual(t, probeDenials(), int64(2))
		require.Zero(t, m.bus.Stats().Misplaced)
		require.Zero(t, m.bus.Stats().SubscribeErrors, "the probe is not a namespace's channel")
	})
}

// calledFromPubSub reports whether a go-redis PubSub is dialling.
func calledFromPubSub() bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "(*PubSub)") {
			return true
		}
		if !more {
			return false
		}
	}
}
