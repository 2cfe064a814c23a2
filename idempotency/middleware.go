package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Defaults of [RouteOptions].
const (
	DefaultMaxRequestBytes = 1 << 20
	DefaultUnavailableWait = time.Second
)

// RouteOptions configures a [Middleware]: one per route or group of routes
// with the same policy. NewMiddleware copies it; nil means the defaults.
type RouteOptions struct {
	// Optional lets requests without a key through, unprotected. By
	// default a missing key is answered 400, as the draft asks of routes
	// that document the key as required.
	Optional bool
	// FailOpen runs the handler without protection when Redis is
	// unavailable (EventFailOpen). By default such a request is answered
	// 503 with Retry-After: it fails closed, because running it unprotected
	// could run it twice. Even with FailOpen, a request this instance holds
	// the unrecorded result of (ErrCompletionPending) and any request once
	// the Store is closed (its queued results were dropped) answer 503.
	FailOpen bool

	// Scope returns the scope of r's key: the authenticated user or API
	// client. An error is answered 400. Default: one scope for every
	// caller.
	//
	// WARNING: without a per-caller scope, a caller who learns another's
	// key can block it (409), or get its response back by sending the same
	// payload.
	Scope func(r *http.Request) (string, error)
	// Key returns r's idempotency key; body is r's body, read already.
	// ok false means there is none. Default: [KeyFromHeader]; see
	// [FormKey] for forms.
	Key func(r *http.Request, body []byte) (key string, ok bool, err error)
	// Fingerprint returns what identifies r's content: a key reused with
	// another fingerprint is answered 422. Default: the method, the path,
	// the raw query and the body.
	Fingerprint func(r *http.Request, body []byte) ([]byte, error)

	// ReplayServerErrors records 5xx responses and replays them, as Stripe
	// does. By default (false) a 5xx response (and a 429) is sent as it is,
	// not recorded, and the attempt fails (Attempt.Fail): the next retry
	// runs the handler again. A 5xx usually means the work did not happen
	// (a database down, a timeout), and the client's retry is the recovery;
	// replaying the error for Retention would force the client to send a
	// new key, and a new key is what lets a payment that did half happen
	// happen twice. A handler that did its side effect and then failed
	// should answer a 2xx/4xx that says so, or rely on the fence and the
	// recovery point to resume on the retry.
	ReplayServerErrors bool

	// MaxRequestBytes bounds the body read to fingerprint it; larger
	// requests are answered 413. Default: 1 MiB.
	MaxRequestBytes int
	// SkipHeaders are response headers that are sent but not recorded.
	// Default: Set-Cookie (a session token would reach Redis), Date and
	// the hop-by-hop headers.
	SkipHeaders []string

	// WaitInFlight, if positive, makes a request that finds its key in
	// flight wait up to this long for the first to complete and get its
	// response, instead of 409 at once. Forms want it: a browser shows the
	// response to the last submission. Default: 0, answer 409 at once.
	WaitInFlight time.Duration
	// UnavailableRetryAfter is the Retry-After of a 503. Default: 1 second.
	UnavailableRetryAfter time.Duration
	// DocsURL, if set, is the problem type of the 400, 409, 422 and 503
	// answers and is linked from them (Link rel="describedby").
	DocsURL string
}

// Middleware protects net/http handlers with a [Store]. It is safe for
// concurrent use.
//
//	HTTP status  when
//	400          no Idempotency-Key (unless Optional), or a malformed one
//	409          the first request with the key is still running (Retry-After)
//	413          the body is larger than MaxRequestBytes
//	422          the key was first used with another payload
//	500          the record in Redis is unreadable (never run twice on a guess)
//	503          Redis is unavailable (Retry-After), unless FailOpen
//	(replay)     the first response: status, recorded headers and body, byte
//	             for byte, with Idempotent-Replayed: true
type Middleware struct {
	s    *Store
	o    RouteOptions
	skip map[string]bool
	ret  string // Retention in seconds, for HeaderRetention
}

// NewMiddleware returns a Middleware over s configured by o.
func NewMiddleware(s *Store, o *RouteOptions) (*Middleware, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidOptions)
	}
	var c RouteOptions
	if o != nil {
		c = *o
	}
	if c.MaxRequestBytes < 0 || c.WaitInFlight < 0 || c.UnavailableRetryAfter < 0 {
		return nil, fmt.Errorf("%w: negative MaxRequestBytes, WaitInFlight or UnavailableRetryAfter", ErrInvalidOptions)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.UnavailableRetryAfter == 0 {
		c.UnavailableRetryAfter = DefaultUnavailableWait
	}
	if c.Key == nil {
		c.Key = func(r *http.Request, _ []byte) (string, bool, error) { return KeyFromHeader(r) }
	}
	if c.Fingerprint == nil {
		c.Fingerprint = DefaultFingerprint
	}
	if c.SkipHeaders == nil {
		c.SkipHeaders = []string{"Set-Cookie", "Date", "Connection", "Keep-Alive", "Proxy-Connection",
			"Transfer-Encoding", "Upgrade", "Trailer", "Te"}
	}
	m := &Middleware{s: s, o: c, skip: map[string]bool{
		HeaderReplayed: true, HeaderRetention: true,
	}}
	for _, h := range c.SkipHeaders {
		m.skip[http.CanonicalHeaderKey(h)] = true
	}
	m.ret = strconv.FormatInt(int64(s.o.Retention/time.Second), 10)
	return m, nil
}

// DefaultFingerprint is the default RouteOptions.Fingerprint: the method,
// the path, the raw query and the body, each length-prefixed.
func DefaultFingerprint(r *http.Request, body []byte) ([]byte, error) {
	h := sha256.New()
	for _, p := range [][]byte{[]byte(r.Method), []byte(r.URL.Path), []byte(r.URL.RawQuery), body} {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return h.Sum(nil), nil
}

// Wrap returns next protected by m.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	body, err := readBody(r, m.o.MaxRequestBytes)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			m.writeProblem(w, http.StatusRequestEntityTooLarge, "Request too large",
				fmt.Sprintf("An idempotent request body may hold at most %d bytes.", m.o.MaxRequestBytes), 0)
			return
		}
		m.writeProblem(w, http.StatusBadRequest, "Request body unreadable", err.Error(), 0)
		return
	}
	key, ok, err := m.o.Key(r, body)
	if err != nil {
		m.writeProblem(w, http.StatusBadRequest, "Idempotency-Key is invalid",
			fmt.Sprintf("It must be one string of 1 to %d printable ASCII characters.", MaxKeyBytes), 0)
		return
	}
	if !ok {
		if m.o.Optional {
			next.ServeHTTP(w, r)
			return
		}
		m.writeProblem(w, http.StatusBadRequest, "Idempotency-Key is missing",
			"This operation is idempotent and requires an Idempotency-Key.", 0)
		return
	}
	scope := ""
	if m.o.Scope != nil {
		if scope, err = m.o.Scope(r); err != nil {
			m.writeProblem(w, http.StatusBadRequest, "Request cannot be scoped", "The caller of this request is unknown.", 0)
			return
		}
	}
	fp, err := m.o.Fingerprint(r, body)
	if err != nil {
		m.writeProblem(w, http.StatusBadRequest, "Request cannot be fingerprinted", err.Error(), 0)
		return
	}
	w.Header().Set(HeaderRetention, m.ret)

	b, err := m.begin(r.Context(), scope, key, fp)
	switch {
	case err == nil:
	case errors.Is(err, ErrMismatch):
		m.writeProblem(w, http.StatusUnprocessableEntity, "Idempotency-Key is already used",
			"This key was used with another request payload; keys must not be reused across payloads.", 0)
		return
	case errors.Is(err, ErrInvalidKey):
		m.writeProblem(w, http.StatusBadRequest, "Idempotency-Key is invalid",
			fmt.Sprintf("It must be one string of 1 to %d printable ASCII characters.", MaxKeyBytes), 0)
		return
	case errors.Is(err, ErrCorrupt):
		m.writeProblem(w, http.StatusInternalServerError, "Idempotency record unreadable",
			"The record of this key cannot be read; the request was not run again.", 0)
		return
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed), errors.Is(err, ErrCompletionPending):
		// Never open on ErrClosed: Close dropped the queued completions,
		// and a request whose result was among them would run again.
		if m.o.FailOpen && !errors.Is(err, ErrCompletionPending) && !errors.Is(err, ErrClosed) {
			m.s.event(r.Context(), Event{Kind: EventFailOpen, Err: err})
			next.ServeHTTP(w, r)
			return
		}
		m.writeProblem(w, http.StatusServiceUnavailable, "Idempotency store unavailable",
			"The request was not run, because it could not be made idempotent. Retry with the same key.", m.o.UnavailableRetryAfter)
		return
	default: // the client went away
		return
	}
	switch b.Outcome {
	case OutcomeInFlight:
		m.writeProblem(w, http.StatusConflict, "A request is outstanding for this Idempotency-Key",
			"A request with the same key is being processed. Retry later to get its response.", max(b.RetryAfter, time.Second))
	case OutcomeCompleted:
		m.replay(w, b.Result)
	default:
		m.run(w, r, next, b.Attempt)
	}
}

// begin calls Begin, and with WaitInFlight polls while the key is in
// flight.
func (m *Middleware) begin(ctx context.Context, scope, key string, fp []byte) (Begun, error) {
	b, err := m.s.Begin(ctx, scope, key, fp)
	if err != nil || b.Outcome != OutcomeInFlight || m.o.WaitInFlight <= 0 {
		return b, err
	}
	deadline := time.Now().Add(m.o.WaitInFlight)
	wait := 10 * time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return b, nil
		}
		t.Reset(min(wait, left, b.RetryAfter+time.Millisecond))
		select {
		case <-ctx.Done():
			return b, fmt.Errorf("idempotency: %w", context.Cause(ctx))
		case <-t.C:
		}
		if b, err = m.s.Begin(ctx, scope, key, fp); err != nil || b.Outcome != OutcomeInFlight {
			return b, err
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// run runs next under a, records what it answered, and sends it.
func (m *Middleware) run(w http.ResponseWriter, r *http.Request, next http.Handler, a *Attempt) {
	kctx, stop := a.Keep(r.Context())
	rec := &recorder{h: make(http.Header), limit: m.s.o.MaxResultBytes}
	detached := context.WithoutCancel(r.Context())
	finished := false
	defer func() {
		if !finished { // next panicked: let the next request run it again
			stop()
			_ = a.Fail(detached)
		}
	}()
	next.ServeHTTP(rec, r.WithContext(kctx))
	finished = true
	stop()
	lost := errors.Is(context.Cause(kctx), ErrLeaseLost)
	switch {
	case lost:
		m.superseded(w)
	case rec.tooLarge:
		res := problemResult(http.StatusInternalServerError, "Response too large to record",
			"The request ran, but its response was larger than the idempotency store keeps.")
		_ = a.Complete(detached, res)
		m.write(w, res.Status, res.Header, res.Body, false)
	case !rec.wrote && r.Context().Err() != nil:
		_ = a.Fail(detached) // the client left before an answer: nothing to replay
	case !m.replayable(rec.statusCode()):
		_ = a.Fail(detached)
		m.write(w, rec.statusCode(), rec.h, rec.body.Bytes(), false)
	default:
		res := rec.result(m.skip)
		err := a.Complete(detached, res)
		if errors.Is(err, ErrResponseTooLarge) { // the headers took it past the limit
			res = problemResult(http.StatusInternalServerError, "Response too large to record",
				"The request ran, but its response was larger than the idempotency store keeps.")
			err = a.Complete(detached, res)
			rec.h = res.Header
		}
		if errors.Is(err, ErrLeaseLost) {
			m.superseded(w)
			return
		}
		// Recorded, deferred, or not recordable: the work is done either
		// way and this is its answer.
		m.write(w, res.Status, rec.h, res.Body, false)
	}
}

func (m *Middleware) superseded(w http.ResponseWriter) {
	m.writeProblem(w, http.StatusConflict, "A newer attempt took this Idempotency-Key over",
		"This request ran past its lease and another attempt took over. Retry later to get that attempt's response.", time.Second)
}

func (m *Middleware) replayable(status int) bool {
	if m.o.ReplayServerErrors {
		return true
	}
	return status < 500 && status != http.StatusTooManyRequests
}

func (m *Middleware) replay(w http.ResponseWriter, res *Result) {
	m.write(w, res.Status, res.Header, res.Body, true)
}

// write sends a response: h's headers (except ours, set here), status and
// body.
func (m *Middleware) write(w http.ResponseWriter, status int, h http.Header, body []byte, replayed bool) {
	dst := w.Header()
	for k, vs := range h {
		if k == HeaderReplayed || k == HeaderRetention {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
	if replayed {
		dst.Set(HeaderReplayed, "true")
	}
	dst.Set(HeaderRetention, m.ret)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var errBodyTooLarge = errors.New("idempotency: request body too large")

// readBody reads r's body (at most limit bytes) and puts it back for the
// handler.
func readBody(r *http.Request, limit int) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("idempotency: read body: %w", err)
	}
	if len(b) > limit {
		return nil, errBodyTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// recorder is the ResponseWriter the handler writes to: everything is kept
// (up to limit bytes of body) and sent once the attempt is recorded.
type recorder struct {
	h        http.Header
	status   int
	body     bytes.Buffer
	limit    int
	wrote    bool
	tooLarge bool
}

// Header returns the headers the handler sets.
func (rec *recorder) Header() http.Header { return rec.h }

// WriteHeader keeps the first final status.
func (rec *recorder) WriteHeader(code int) {
	if rec.status != 0 || code < 200 { // informational answers are not kept
		return
	}
	rec.status = code
	rec.wrote = true
}

// Write keeps p, up to the limit; past it, it fails with
// ErrResponseTooLarge.
func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.body.Len()+len(p) > rec.limit {
		rec.tooLarge = true
		return 0, ErrResponseTooLarge
	}
	return rec.body.Write(p)
}

func (rec *recorder) statusCode() int {
	if rec.status == 0 {
		return http.StatusOK
	}
	return rec.status
}

// result is what to record: the status, the headers but the skipped ones,
// and the body. A missing Content-Type is sniffed now, as net/http would,
// so that the replay carries the same one.
func (rec *recorder) result(skip map[string]bool) Result {
	body := rec.body.Bytes()
	if rec.h.Get("Content-Type") == "" && len(body) > 0 {
		rec.h.Set("Content-Type", http.DetectContentType(body))
	}
	h := make(http.Header, len(rec.h))
	for k, vs := range rec.h {
		if skip[http.CanonicalHeaderKey(k)] {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	return Result{Status: rec.statusCode(), Header: h, Body: body}
}
