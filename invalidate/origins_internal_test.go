package invalidate

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// countSink is a tier.Sink that counts Untrust calls.
type countSink struct {
	mu      sync.Mutex
	untrust int
}

func (s *countSink) DropKeys([]string)                   {}
func (s *countSink) DropTags([]string, int64)            {}
func (s *countSink) LimitAge(time.Duration, tier.Reason) {}
func (s *countSink) Untrust(int64, tier.Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.untrust++
}

// TestSequence_ManyOrigins: a receiver that hears more than 63 other
// origins still tracks a new one's sequence, so that its lost messages are
// found. Before, prune ran before the new origin's first hearing was
// recorded, took it for dead, and forgot it at once: every one of its
// messages was a first contact, and no gap was ever found.
func TestSequence_ManyOrigins(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	b := Must(srv.Client(t), &Options{Heartbeat: time.Hour})
	s := &countSink{}
	_, err := b.Register("ns", s)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ready, stop := context.WithTimeout(t.Context(), 10*time.Second) // a bound against a hang
	defer stop()
	require.NoError(t, b.Ready(ready))

	publish := func(m message) {
		require.NoError(t, rdb.Publish(t.Context(), Channel("ns"), m.encode()).Err())
	}
	for i := range 100 {
		publish(message{kind: kindHeartbeat, origin: fmt.Sprint("o", i)})
	}
	publish(message{kind: kindHeartbeat, origin: "x"})
	publish(message{kind: kindInvalidate, origin: "x", seq: 1, keys: []string{"k1"}})
	publish(message{kind: kindInvalidate, origin: "x", seq: 3, keys: []string{"k3"}}) // 2 was lost
	require.Eventually(t, func() bool { return b.Stats().Received >= 2 }, 10*time.Second, time.Millisecond)
	require.EqualValues(t, 1, b.Stats().Gaps, "the lost message of the 101st origin was found")
}
