package idempotency_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/internal/redistest"
)

// events collects a Store's events and lets a test wait for one.
type events struct {
	mu   sync.Mutex
	all  []idempotency.Event
	subs []chan idempotency.Event
}

func (e *events) on(ev idempotency.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
	for _, c := range e.subs {
		select {
		case c <- ev:
		default:
		}
	}
}

// watch returns a channel that gets the events from now on (buffered;
// events past its capacity are dropped).
func (e *events) watch() <-chan idempotency.Event {
	c := make(chan idempotency.Event, 1024)
	e.mu.Lock()
	e.subs = append(e.subs, c)
	e.mu.Unlock()
	return c
}

func (e *events) count(k idempotency.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// waitFor reads c until an event of kind k arrives. It gives up after a
// minute (a liveness bound against a hang, not a timing assertion) and
// then lists the events it saw.
func waitFor(t *testing.T, c <-chan idempotency.Event, k idempotency.EventKind) idempotency.Event {
	t.Helper()
	var seen []string
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		select {
		case ev := <-c:
			if ev.Kind == k {
				return ev
			}
			seen = append(seen, fmt.Sprintf("%v(%v)", ev.Kind, ev.Err))
		case <-deadline.C:
			t.Fatalf("no %v event within a minute; saw %v", k, seen)
		case <-t.Context().Done():
			t.Fatalf("no %v event", k)
		}
	}
}

// newStore returns a Store over rdb, closed when the test ends, with its
// events.
func newStore(t *testing.T, rdb redis.UniversalClient, o *idempotency.Options) (*idempotency.Store, *events) {
	t.Helper()
	var opts idempotency.Options
	if o != nil {
		opts = *o
	}
	opts.Client = rdb
	if opts.Timeout == 0 {
		// The machine running the tests may be busy: a slow answer must not
		// read as Redis being down, except where a test says so.
		opts.Timeout = 10 * time.Second
	}
	ev := &events{}
	user := opts.OnEvent
	opts.OnEvent = func(e idempotency.Event) {
		ev.on(e)
		if user != nil {
			user(e)
		}
	}
	s, err := idempotency.New(t.Context(), &opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, ev
}

// startRedis starts a redis-server for the test and returns a client.
func startRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	return srv, srv.Client(t)
}

// response is what a test keeps of an HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to h (a handler, no network) and returns its response.
func do(t *testing.T, h http.Handler, method, path, key string, body []byte) response {
	t.Helper()
	return doCtx(t.Context(), h, method, path, key, body)
}

func doCtx(ctx context.Context, h http.Handler, method, path, key string, body []byte) response {
	r := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if key != "" {
		r.Header.Set(idempotency.HeaderKey, key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return response{status: w.Code, header: w.Result().Header, body: w.Body.Bytes()}
}

// send sends a request over the network with c.
func send(t *testing.T, c *http.Client, url, key string, body []byte) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return response{}
	}
	if key != "" {
		req.Header.Set(idempotency.HeaderKey, key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return response{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// releaser returns a function that closes ch once; it is also called when
// the test ends, so that a handler blocked on ch never outlives a test that
// failed early.
func releaser(t *testing.T, ch chan struct{}) func() {
	var once sync.Once
	f := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(f)
	return f
}
