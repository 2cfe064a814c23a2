package idempotency_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/idempotency"
)

func newMiddleware(t *testing.T, s *idempotency.Store, o *idempotency.RouteOptions) *idempotency.Middleware {
	t.Helper()
	m, err := idempotency.NewMiddleware(s, o)
	require.NoError(t, err)
	return m
}

// TestMiddleware_Concurrent: 100 requests with one key on two instances:
// the handler runs once, the other 99 get 409 while it runs, and every
// request after it gets its response byte for byte.
func TestMiddleware_Concurrent(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s1, _ := newStore(t, rdb, nil)
	s2, _ := newStore(t, rdb, nil)

	var runs atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		close(started)
		<-release
		a, ok := idempotency.FromContext(r.Context())
		if !ok {
			http.Error(w, "no attempt", 500)
			return
		}
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Booking", fmt.Sprintf("%x", id))
		w.Header().Set("Set-Cookie", "session=secret") // sent, not recorded
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"booking": fmt.Sprintf("%x", id), "fence": a.Fence})
	})
	srv1 := httptest.NewServer(newMiddleware(t, s1, nil).Wrap(handler))
	t.Cleanup(srv1.Close)
	srv2 := httptest.NewServer(newMiddleware(t, s2, nil).Wrap(handler))
	t.Cleanup(srv2.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	unblock := releaser(t, release) // registered after the servers: runs before they close

	const n = 100
	body := []byte(`{"slot":"2027-01-05T10:00","expert":42,"amount":9000}`)
	results := make(chan response, n)
	var wg sync.WaitGroup
	for i := range n {
		url := srv1.URL
		if i%2 == 1 {
			url = srv2.URL
		}
		wg.Go(func() { results <- send(t, client, url+"/book", `"book-and-pay-1"`, body) })
	}
	<-started
	// The handler blocks: the 99 others answer now, all 409.
	for range n - 1 {
		r := <-results
		require.Equal(t, http.StatusConflict, r.status, "%s", r.body)
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
		require.NotEmpty(t, r.header.Get("Retry-After"))
		require.Equal(t, "86400", r.header.Get(idempotency.HeaderRetention))
	}
	unblock()
	first := <-results
	wg.Wait()
	require.Equal(t, http.StatusCreated, first.status)
	require.Equal(t, "session=secret", first.header.Get("Set-Cookie"))
	require.Empty(t, first.header.Get(idempotency.HeaderReplayed))

	// Retries on both instances, concurrently: the same response.
	for i := range n {
		url := srv1.URL
		if i%2 == 1 {
			url = srv2.URL
		}
		wg.Go(func() { results <- send(t, client, url+"/book", `"book-and-pay-1"`, body) })
	}
	wg.Wait()
	close(results)
	for r := range results {
		require.Equal(t, first.status, r.status)
		require.Equal(t, first.body, r.body, "byte-identical replay")
		require.Equal(t, first.header.Get("X-Booking"), r.header.Get("X-Booking"))
		require.Equal(t, first.header.Get("Content-Type"), r.header.Get("Content-Type"))
		require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
		require.Empty(t, r.header.Get("Set-Cookie"), "cookies are not recorded")
	}
	require.Equal(t, int32(1), runs.Load(), "the handler ran once")

	// Another payload with the key: 422. No key: 400.
	r := send(t, client, srv2.URL+"/book", `"book-and-pay-1"`, []byte(`{"slot":"2027-01-05T11:00"}`))
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	r = send(t, client, srv1.URL+"/book", "", body)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, int32(1), runs.Load())
}

func TestMiddleware_Statuses(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, nil)
	var runs atomic.Int32
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		_, _ = w.Write([]byte("done"))
	})
	m := newMiddleware(t, s, &idempotency.RouteOptions{MaxRequestBytes: 64, DocsURL: "https://example.com/docs/idempotency"})
	h := m.Wrap(ok)

	tests := []struct {
		name   string
		key    string
		header []string // extra Idempotency-Key fields
		body   string
		status int
		title  string
	}{
		{name: "missing key", status: 400, title: "Idempotency-Key is missing"},
		{name: "empty key", key: `""`, status: 400, title: "Idempotency-Key is invalid"},
		{name: "unterminated string", key: `"abc`, status: 400, title: "Idempotency-Key is invalid"},
		{name: "bad escape", key: `"a\b"`, status: 400, title: "Idempotency-Key is invalid"},
		{name: "too long", key: strings.Repeat("k", 256), status: 400, title: "Idempotency-Key is invalid"},
		{name: "two fields", key: "a", header: []string{"b"}, status: 400, title: "Idempotency-Key is invalid"},
		{name: "body too large", key: "big", body: strings.Repeat("x", 65), status: 413, title: "Request too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(t.Context(), "POST", "/pay", strings.NewReader(tt.body))
			if tt.key != "" {
				r.Header.Set(idempotency.HeaderKey, tt.key)
			}
			for _, v := range tt.header {
				r.Header.Add(idempotency.HeaderKey, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.Equal(t, tt.status, w.Code)
			require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
			require.Contains(t, w.Header().Get("Link"), `<https://example.com/docs/idempotency>; rel="describedby"`)
			var p struct {
				Type, Title string
				Status      int
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
			require.Equal(t, tt.title, p.Title)
			require.Equal(t, tt.status, p.Status)
			require.Equal(t, "https://example.com/docs/idempotency", p.Type)
		})
	}
	require.Zero(t, runs.Load())

	// A quoted key and the same key bare are one key.
	r := do(t, h, "POST", "/pay", `"k-1"`, []byte("a"))
	require.Equal(t, 200, r.status)
	r = do(t, h, "POST", "/pay", `k-1`, []byte("a"))
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	// The path is part of the fingerprint.
	r = do(t, h, "POST", "/pay?x=1", `k-1`, []byte("a"))
	require.Equal(t, 422, r.status)
	require.Equal(t, int32(1), runs.Load())

	// An optional route lets requests without a key through.
	opt := newMiddleware(t, s, &idempotency.RouteOptions{Optional: true}).Wrap(ok)
	r = do(t, opt, "POST", "/pay", "", nil)
	require.Equal(t, 200, r.status)
	require.Empty(t, r.header.Get(idempotency.HeaderRetention))
	require.Equal(t, int32(2), runs.Load())
}

// TestMiddleware_ServerErrors: by default a 5xx is sent, not recorded, and
// the next retry runs the handler again; with ReplayServerErrors it is
// replayed like any response.
func TestMiddleware_ServerErrors(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, ev := newStore(t, rdb, nil)
	var runs atomic.Int32
	flaky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			http.Error(w, "database down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("booked"))
	})
	h := newMiddleware(t, s, nil).Wrap(flaky)
	r := do(t, h, "POST", "/b", "k", nil)
	require.Equal(t, 503, r.status)
	r = do(t, h, "POST", "/b", "k", nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, "booked", string(r.body))
	r = do(t, h, "POST", "/b", "k", nil)
	require.Equal(t, "booked", string(r.body))
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, int32(2), runs.Load())
	require.Equal(t, 1, ev.count(idempotency.EventFailed))

	runs.Store(0)
	h = newMiddleware(t, s, &idempotency.RouteOptions{ReplayServerErrors: true}).Wrap(flaky)
	r = do(t, h, "POST", "/b", "k2", nil)
	require.Equal(t, 503, r.status)
	r = do(t, h, "POST", "/b", "k2", nil)
	require.Equal(t, 503, r.status)
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, int32(1), runs.Load())
}

// TestMiddleware_ResponseTooLarge: the request ran, so its (synthesized)
// answer is recorded and it does not run again.
func TestMiddleware_ResponseTooLarge(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, &idempotency.Options{MaxResultBytes: 1024})
	var runs atomic.Int32
	h := newMiddleware(t, s, nil).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		_, err := w.Write(make([]byte, 2048))
		if err == nil {
			t.Error("a write past the limit succeeded")
		}
	}))
	r := do(t, h, "POST", "/big", "k", nil)
	require.Equal(t, 500, r.status)
	r = do(t, h, "POST", "/big", "k", nil)
	require.Equal(t, 500, r.status)
	require.Equal(t, "true", r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, int32(1), runs.Load())
}

// TestMiddleware_Unavailable: with Redis down a protected route fails
// closed with 503 and Retry-After, and the handler does not run; a route
// that opted out runs it unprotected.
func TestMiddleware_Unavailable(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	s, ev := newStore(t, rdb, &idempotency.Options{Timeout: 200 * time.Millisecond})
	var runs atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { runs.Add(1) })
	srv.Kill()
	r := do(t, newMiddleware(t, s, &idempotency.RouteOptions{UnavailableRetryAfter: 3 * time.Second}).Wrap(handler), "POST", "/p", "k", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "3", r.header.Get("Retry-After"))
	require.Zero(t, runs.Load())
	require.Equal(t, 1, ev.count(idempotency.EventUnavailable))

	r = do(t, newMiddleware(t, s, &idempotency.RouteOptions{FailOpen: true}).Wrap(handler), "POST", "/p", "k", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, int32(1), runs.Load())
	require.Equal(t, 1, ev.count(idempotency.EventFailOpen))
}

// breakerStub is an open circuit breaker.
type breakerStub struct{ calls atomic.Int32 }

func (b *breakerStub) Allow() bool { b.calls.Add(1); return false }
func (b *breakerStub) Success()    {}
func (b *breakerStub) Failure()    {}

// TestMiddleware_Breaker: after DefaultBreakerFailures requests found
// Redis down, the next ones fail closed without trying.
func TestMiddleware_Breaker(t *testing.T) {
	t.Parallel()
	srv, rdb := startRedis(t)
	s, ev := newStore(t, rdb, nil)
	h := newMiddleware(t, s, nil).Wrap(http.NotFoundHandler())
	srv.Kill()
	for range idempotency.DefaultBreakerFailures + 3 {
		r := do(t, h, "POST", "/p", "k", nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status)
	}
	ev.mu.Lock()
	var open int
	for _, e := range ev.all {
		if e.Kind == idempotency.EventUnavailable && strings.Contains(e.Err.Error(), "circuit breaker open") {
			open++
		}
	}
	ev.mu.Unlock()
	require.Equal(t, 3, open)
}

func TestMiddleware_BreakerOpen(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	b := &breakerStub{}
	s, _ := newStore(t, rdb, &idempotency.Options{Breaker: b})
	r := do(t, newMiddleware(t, s, nil).Wrap(http.NotFoundHandler()), "POST", "/p", "k", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, int32(1), b.calls.Load())
}

// TestMiddleware_Form: a form submitted twice (a double click) runs once;
// the second submission waits for the first and gets its response.
func TestMiddleware_Form(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, ev := newStore(t, rdb, &idempotency.Options{Namespace: "form", Retention: idempotency.DefaultFormRetention})
	inFlight := ev.watch()
	var runs atomic.Int32
	release := make(chan struct{})
	unblock := releaser(t, release)
	h := newMiddleware(t, s, idempotency.FormRoute("form_token", func(r *http.Request) (string, error) {
		c, err := r.Cookie("session")
		if err != nil {
			return "", err
		}
		return c.Value, nil
	}, 10*time.Second)).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		<-release
		http.Redirect(w, r, "/bookings/7", http.StatusSeeOther)
	}))
	token := idempotency.NewFormToken()
	post := func(extra string) response {
		form := url.Values{"form_token": {token}, "slot": {"10:00"}, "clicked_at": {extra}}
		r := httptest.NewRequestWithContext(t.Context(), "POST", "/book", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: "session", Value: "s-1"})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return response{status: w.Code, header: w.Result().Header, body: w.Body.Bytes()}
	}
	first := make(chan response, 1)
	go func() { first <- post("1") }()
	second := make(chan response, 1)
	waitFor(t, inFlight, idempotency.EventAcquired)
	go func() { second <- post("2") }()
	waitFor(t, inFlight, idempotency.EventInFlight) // the second one waits
	unblock()
	r1, r2 := <-first, <-second
	require.Equal(t, http.StatusSeeOther, r1.status)
	require.Equal(t, r1.status, r2.status)
	require.Equal(t, "/bookings/7", r2.header.Get("Location"))
	require.Equal(t, r1.body, r2.body)
	require.Equal(t, "true", r2.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, strconv.Itoa(int(idempotency.DefaultFormRetention/time.Second)), r2.header.Get(idempotency.HeaderRetention))
	require.Equal(t, int32(1), runs.Load())

	// A form without its token is refused; one without a session too.
	r := httptest.NewRequestWithContext(t.Context(), "POST", "/book", strings.NewReader("slot=10"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusBadRequest, w.Code)
}

// TestMiddleware_ClientGone: a client that leaves before the handler
// answers leaves nothing to replay: the attempt fails and the retry runs.
func TestMiddleware_ClientGone(t *testing.T) {
	t.Parallel()
	_, rdb := startRedis(t)
	s, _ := newStore(t, rdb, nil)
	var runs atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	h := newMiddleware(t, s, nil).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if runs.Add(1) == 1 {
			cancel()
			<-r.Context().Done() // the handler gives up without answering
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	doCtx(ctx, h, "POST", "/p", "k", nil)
	r := do(t, h, "POST", "/p", "k", nil)
	require.Equal(t, 200, r.status)
	require.Empty(t, r.header.Get(idempotency.HeaderReplayed))
	require.Equal(t, int32(2), runs.Load())
}
