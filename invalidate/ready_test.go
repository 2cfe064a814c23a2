package invalidate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
)

// TestBus_Ready: Ready waits for Run and for every registered channel's
// confirmation, and says what is missing when its context ends first; a
// bus that is not running says how to start it.
func TestBus_Ready(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m := newMember(t, srv.Client(t), nil, "a", "b")

	err := m.pubs["a"].Publish(t.Context(), []string{"k"}, nil)
	require.ErrorIs(t, err, invalidate.ErrNotRunning)
	require.ErrorContains(t, err, "bus.Run(ctx)", "the error says what to do")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	err = m.bus.Ready(ctx)
	cancel()
	require.ErrorIs(t, err, invalidate.ErrNotRunning)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Ready, started before Run, returns once both channels are
	// confirmed and their caches told.
	ready := make(chan error, 1)
	go func() { ready <- m.bus.Ready(t.Context()) }()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.bus.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	require.NoError(t, <-ready)
	for _, ns := range []string{"a", "b"} {
		require.Equal(t, 1, m.sinks[ns].untrusted("subscribed"), ns)
	}
	require.NoError(t, m.pubs["a"].Publish(t.Context(), []string{"k"}, nil))

	// A namespace registered later is not ready until its channel is.
	s := newSink()
	_, err = m.bus.Register("c", s)
	require.NoError(t, err)
	require.NoError(t, m.bus.Ready(t.Context()))
	require.Equal(t, 1, s.untrusted("subscribed"))

	// A bus with no namespace is ready as soon as it runs.
	empty := invalidate.Must(srv.Client(t), nil)
	ctx, cancel = context.WithCancel(context.Background())
	emptyDone := make(chan error, 1)
	go func() { emptyDone <- empty.Run(ctx) }()
	require.NoError(t, empty.Ready(t.Context()))
	cancel()
	require.NoError(t, <-emptyDone)
}

// TestBus_RunReturnsWhenCancelled: Run returns as soon as its context
// ends, not after the heartbeat interval (an hour here) its receive loop
// waits in.
func TestBus_RunReturnsWhenCancelled(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m := newMember(t, srv.Client(t), &invalidate.Options{Heartbeat: time.Hour}, "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.bus.Run(ctx) }()
	require.NoError(t, m.bus.Ready(t.Context()))
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
		t.Logf("Run returned %v after its context ended", time.Since(cancelled))
	case <-time.After(30 * time.Second):
		require.FailNow(t, "Run did not return after its context ended")
	}
	require.ErrorIs(t, m.pubs["a"].Publish(t.Context(), []string{"k"}, nil), invalidate.ErrNotRunning)
}
