package invalidate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// sink is a tier.Sink that records what the bus told it.
type sink struct {
	mu      sync.Mutex
	keys    map[string]time.Time // key → when it was first dropped
	untrust map[string]int       // reason → count
	limited bool                 // an age limit is in force
	changed chan struct{}        // closed and replaced at every call
}

var _ tier.Sink = (*sink)(nil)

func newSink() *sink {
	return &sink{keys: map[string]time.Time{}, untrust: map[string]int{}, changed: make(chan struct{})}
}

// note records a change; s.mu must be held.
func (s *sink) note() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sink) DropKeys(keys []string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if _, ok := s.keys[k]; !ok {
			s.keys[k] = now
		}
	}
	s.note()
}

func (s *sink) DropTags([]string, int64) {}

func (s *sink) Untrust(_ int64, reason tier.Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.untrust[string(reason)]++
	s.note()
}

func (s *sink) LimitAge(maxAge time.Duration, _ tier.Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited = maxAge > 0
	s.note()
}

// untrusted returns how often Untrust was called with reason.
func (s *sink) untrusted(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.untrust[reason]
}

// heard returns when key was dropped, if it was.
func (s *sink) heard(key string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.keys[key]
	return t, ok
}

// count returns how many distinct keys were dropped.
func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// waitFor blocks until cond holds (checked at every change of the sink)
// or timeout passes.
func (s *sink) waitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			require.FailNow(t, "timed out waiting: "+msg)
		}
	}
}

// within reports whether cond holds (checked at every change of the sink)
// before timeout passes.
func (s *sink) within(timeout time.Duration, cond func() bool) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return cond()
		}
	}
}

// member is one instance's bus with one recording sink per namespace.
type member struct {
	bus   *invalidate.Bus
	pubs  map[string]tier.Publisher
	sinks map[string]*sink
}

// newMember creates a bus over client with namespaces registered; start it
// with run.
func newMember(t testing.TB, client redis.UniversalClient, o *invalidate.Options, namespaces ...string) *member {
	t.Helper()
	m := &member{bus: invalidate.Must(client, o), pubs: map[string]tier.Publisher{}, sinks: map[string]*sink{}}
	for _, ns := range namespaces {
		m.sinks[ns] = newSink()
		p, err := m.bus.Register(ns, m.sinks[ns])
		require.NoError(t, err)
		m.pubs[ns] = p
	}
	return m
}

// run runs the bus until the test ends and waits until every namespace is
// subscribed.
func (m *member) run(t testing.TB) *member {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.bus.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	for ns, s := range m.sinks {
		s.waitFor(t, 10*time.Second, "subscribed to "+ns, func() bool { return s.untrusted("subscribed") > 0 })
	}
	return m
}

// startMember is newMember and run.
func startMember(t testing.TB, client redis.UniversalClient, o *invalidate.Options, namespaces ...string) *member {
	t.Helper()
	return newMember(t, client, o, namespaces...).run(t)
}

// countingSink is a sink that reads its bus's Stats().Received while it
// drops keys.
type countingSink struct {
	*sink
	bus      *invalidate.Bus
	atDrop   sync.Mutex
	received []uint64 // guarded by atDrop: Received seen by each DropKeys
}

func (s *countingSink) DropKeys(keys []string) {
	s.atDrop.Lock()
	s.received = append(s.received, s.bus.Stats().Received)
	s.atDrop.Unlock()
	s.sink.DropKeys(keys)
}

// TestBus_ReceivedCountedAfterDrop: a message is counted in
// Stats().Received only once the sink has dropped its keys, so that a
// caller that waits for the count may then read the cache (tests do). The
// sink reads the count while it drops: the message must not be in it yet.
func TestBus_ReceivedCountedAfterDrop(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := startMember(t, srv.Client(t), nil, "ns")
	b := newMember(t, srv.Client(t), nil)
	s := &countingSink{sink: newSink(), bus: b.bus}
	_, err := b.bus.Register("ns", s)
	require.NoError(t, err)
	b.sinks["ns"] = s.sink
	b.run(t)

	require.NoError(t, a.pubs["ns"].Publish(t.Context(), []string{"k"}, nil))
	s.waitFor(t, 10*time.Second, "B dropped k", func() bool { _, ok := s.heard("k"); return ok })
	s.atDrop.Lock()
	require.Equal(t, []uint64{0}, s.received, "Received counted the message before its keys were dropped")
	s.atDrop.Unlock()
	// Counted right after (not before DropKeys has returned).
	require.Eventually(t, func() bool { return b.bus.Stats().Received == 1 }, 10*time.Second, time.Millisecond)
}
