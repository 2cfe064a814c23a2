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

// TestBus_Probe: on one server the probe never finds the subscription
// misplaced. Behind something that sends PUBLISH and SUBSCRIBE to two
// different servers (a dialer here; a proxy in real life), it replaces the
// subscription twice, then gives up rather than drop L1 at every
// heartbeat.
func TestBus_Probe(t *testing.T) {
	t.Parallel()
	const hb = 20 * time.Millisecond
	// DeadAfter is long: no silence replaces a subscription here.
	o := &invalidate.Options{Heartbeat: hb, DeadAfter: time.Hour}

	t.Run("one server", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		m := startMember(t, srv.Client(t), o, "a")
		before := publishCalls(t, srv)
		require.Eventually(t, func() bool { return publishCalls(t, srv) >= before+20 }, 10*time.Second, hb,
			"ten heartbeats, each with its probe")
		require.Zero(t, m.bus.Stats().Misplaced)
		require.Zero(t, m.bus.Stats().Reconnects)
	})

	t.Run("always misplaced", func(t *testing.T) {
		t.Parallel()
		subSrv, pubSrv := redistest.Start(t), redistest.Start(t)
		opts := pubSrv.Options()
		opts.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr := pubSrv.Addr()
			if calledFromPubSub() {
				addr = subSrv.Addr()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		client := redis.NewClient(opts)
		t.Cleanup(func() { _ = client.Close() })
		m := startMember(t, client, o, "a")
		require.Eventually(t, func() bool { return m.bus.Stats().Misplaced == 2 }, 10*time.Second, hb)
		before := publishCalls(t, pubSrv)
		require.Eventually(t, func() bool { return publishCalls(t, pubSrv) >= before+20 }, 10*time.Second, hb,
			"twenty heartbeats later")
		require.EqualValues(t, 2, m.bus.Stats().Misplaced, "the probe gave up")
		require.EqualValues(t, 2, m.bus.Stats().Reconnects)
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
