package session_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/obstest"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/session"
)

var secret = []byte("test-secret-0123456789")

const heartbeat = 50 * time.Millisecond

// node is one application instance: a Manager with its own Redis client
// and its own bus (on its own client), as separate processes would have.
type node struct {
	m   *session.Manager
	bus *invalidate.Bus
	rec *obstest.Recorder // the L1 cache's tier events
	ev  *events           // the Manager's events
	rdb redis.UniversalClient
}

type nodeOpts struct {
	staleBound time.Duration
	o          session.Options // Client, Invalidator, Secret, Observer, CacheObserver are set by newNode
	noBus      bool
}

// newNode starts an instance whose Manager uses rdb and whose bus uses
// busClient (clients the test owns; the bus's may go through a proxy).
func newNode(t *testing.T, rdb redis.UniversalClient, busClient redis.UniversalClient, no nodeOpts) *node {
	t.Helper()
	n := &node{rec: &obstest.Recorder{}, ev: &events{}, rdb: rdb}
	o := no.o
	o.Client = rdb
	o.Secret = secret
	o.Observer = n.ev
	o.CacheObserver = n.rec
	if o.Timeout == 0 {
		// Tests of what Redis decides must not see a fallback because a
		// loaded machine (-race, two shared cores) took over 200 ms.
		o.Timeout = 5 * time.Second
	}
	if !no.noBus {
		n.bus = invalidate.Must(busClient, &invalidate.Options{Heartbeat: heartbeat, StaleBound: no.staleBound})
		o.Invalidator = n.bus
	}
	m, err := session.New(&o)
	require.NoError(t, err)
	n.m = m
	if n.bus != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.bus.Run(ctx) }()
		t.Cleanup(func() {
			require.NoError(t, m.Close())
			cancel()
			require.NoError(t, <-done)
		})
		// Wait until the bus is ready, not only until its confirmation
		// dropped L1 ("subscribed"): until it hears itself back, the cache
		// serves nothing from L1 and fences its loads (so a test's second
		// read would go to Redis again).
		ready, stopWaiting := context.WithTimeout(t.Context(), 10*time.Second) // a bound against a hang
		defer stopWaiting()
		require.NoError(t, n.bus.Ready(ready))
		require.Positive(t, n.rec.Dropped("subscribed"))
	} else {
		t.Cleanup(func() { require.NoError(t, m.Close()) })
	}
	return n
}

// newClient returns a client of addr with the test's timeouts, closed in
// t.Cleanup.
func newClient(t *testing.T, o *redis.Options, addr string) *redis.Client {
	t.Helper()
	oo := *o
	if addr != "" {
		oo.Addr = addr
	}
	oo.MaxRetries = -1
	oo.DialTimeout, oo.ReadTimeout, oo.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	c := redis.NewClient(&oo)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// events records the Manager's events, and calls on (if set) with each.
type events struct {
	mu sync.Mutex
	es []session.Event
	on func(session.Event)
}

func (e *events) Event(_ context.Context, ev session.Event) {
	e.mu.Lock()
	e.es = append(e.es, ev)
	on := e.on
	e.mu.Unlock()
	if on != nil {
		on(ev)
	}
}

// onEvent makes e call f with each event from now on.
func (e *events) onEvent(f func(session.Event)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.on = f
}

func (e *events) of(kind session.EventKind) []session.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []session.Event
	for _, ev := range e.es {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func errorIs(err, target error) bool { return errors.Is(err, target) }
