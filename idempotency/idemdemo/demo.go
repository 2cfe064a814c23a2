// Package idemdemo runs the idempotency and onetime part of the booking
// demo against a Redis: "book and pay" retried concurrently with one key on
// two instances, a form submitted twice, and a verification code guessed
// wrong and then used. cmd/demo calls [Run] and prints [Report.Table] with
// its final table.
package idemdemo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/onetime"
)

// Config configures [Run].
type Config struct {
	// Client is the Redis to run against (ContextTimeoutEnabled). Required.
	Client redis.UniversalClient
	// Retries is how many concurrent requests send the one "book and pay"
	// key, split over two instances. Default: 50.
	Retries int
	// PaymentLatency stands for the payment provider's answer time, during
	// which the retries find the booking in flight. Default: 50 ms.
	PaymentLatency time.Duration
	// AllowEvictingRedis runs even on a Redis whose maxmemory-policy may
	// evict keys (a shared development server). See
	// idempotency.Options.AllowEvictingRedis.
	AllowEvictingRedis bool
	// Out, if set, gets a line per step.
	Out io.Writer
}

// Report counts what happened.
type Report struct {
	// Book and pay, one key.
	Requests    int // requests sent with the key (retries included)
	HandlerRuns int // times the booking handler ran
	Charges     int // charges the payment provider made
	InFlight409 int // answered 409 while the first ran
	Replays     int // answered with the first response, byte for byte
	Mismatch422 int // the key with another payload
	Missing400  int // no key
	// Form double-submit.
	FormSubmits int
	FormRuns    int
	FormReplays int
	// Verification code.
	CodeWrong    int // wrong guesses refused
	CodeAccepted int // correct code accepted
	CodeReused   int // the used code refused afterwards
}

// Table returns the report as rows of (what, count), for the demo's final
// table.
func (r *Report) Table() [][2]string {
	row := func(k string, v int) [2]string { return [2]string{k, strconv.Itoa(v)} }
	return [][2]string{
		row("book+pay requests (one key, 2 instances)", r.Requests),
		row("  handler runs", r.HandlerRuns),
		row("  charges", r.Charges),
		row("  409 while in flight", r.InFlight409),
		row("  byte-identical replays", r.Replays),
		row("  422 other payload", r.Mismatch422),
		row("  400 no key", r.Missing400),
		row("form submissions (double click)", r.FormSubmits),
		row("  form handler runs", r.FormRuns),
		row("  form replays", r.FormReplays),
		row("verification code: wrong guesses", r.CodeWrong),
		row("  accepted", r.CodeAccepted),
		row("  reuse refused", r.CodeReused),
	}
}

// Run runs the three scenarios and returns their counts. Its keys live in
// namespaces of their own for at most 10 minutes.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Client == nil {
		return nil, errors.New("idemdemo: nil Client")
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 50
	}
	if cfg.PaymentLatency <= 0 {
		cfg.PaymentLatency = 50 * time.Millisecond
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	run := make([]byte, 4)
	_, _ = rand.Read(run)
	ns := "demo-" + hex.EncodeToString(run)
	rep := &Report{}
	if err := bookAndPay(ctx, cfg, ns, rep); err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "book and pay: %d requests, %d run, %d charge, %d x 409, %d replays\n",
		rep.Requests, rep.HandlerRuns, rep.Charges, rep.InFlight409, rep.Replays)
	if err := doubleSubmit(ctx, cfg, ns, rep); err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "form: %d submissions, %d run, %d replay\n", rep.FormSubmits, rep.FormRuns, rep.FormReplays)
	if err := verificationCode(ctx, cfg, ns, rep); err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "code: %d wrong, %d accepted, %d reuse refused\n", rep.CodeWrong, rep.CodeAccepted, rep.CodeReused)
	return rep, nil
}

func newStore(ctx context.Context, cfg Config, ns string, retention time.Duration) (*idempotency.Store, error) {
	return idempotency.New(ctx, &idempotency.Options{Client: cfg.Client, Namespace: ns, Retention: retention,
		AllowEvictingRedis: cfg.AllowEvictingRedis})
}

// provider is a payment provider that charges once per idempotency key.
type provider struct {
	mu      sync.Mutex
	charges map[string]string
	latency time.Duration
}

func (p *provider) charge(ctx context.Context, key string) (string, error) {
	t := time.NewTimer(p.latency) // stands for the provider's answer time
	defer t.Stop()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if id, ok := p.charges[key]; ok {
		return id, nil
	}
	id := fmt.Sprintf("ch_%d", len(p.charges)+1)
	p.charges[key] = id
	return id, nil
}

func bookAndPay(ctx context.Context, cfg Config, ns string, rep *Report) error {
	psp := &provider{charges: map[string]string{}, latency: cfg.PaymentLatency}
	var runs atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		a, _ := idempotency.FromContext(r.Context())
		ch, err := psp.charge(r.Context(), a.DerivedKey("charge"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"booking": "b_1", "charge": ch, "fence": a.Fence})
	})
	var hs [2]http.Handler
	for i := range hs {
		s, err := newStore(ctx, cfg, ns+"-pay", 10*time.Minute)
		if err != nil {
			return err
		}
		defer s.Close()
		mw, err := idempotency.NewMiddleware(s, &idempotency.RouteOptions{
			Scope: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
		})
		if err != nil {
			return err
		}
		hs[i] = mw.Wrap(handler)
	}
	body := `{"expert":42,"slot":"2027-01-05T10:00","amount":9000}`
	send := func(h http.Handler, key, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/bookings", strings.NewReader(body))
		r.Header.Set("X-User", "user-7")
		if key != "" {
			r.Header.Set(idempotency.HeaderKey, key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	key := `"book-and-pay-` + ns + `"`
	results := make([]*httptest.ResponseRecorder, cfg.Retries)
	var wg sync.WaitGroup
	for i := range cfg.Retries {
		wg.Go(func() { results[i] = send(hs[i%2], key, body) })
	}
	wg.Wait()
	var first []byte
	for _, w := range results {
		if w.Code == http.StatusCreated && w.Header().Get(idempotency.HeaderReplayed) == "" {
			first = w.Body.Bytes()
		}
	}
	// The clients that got 409 retry until they get the answer.
	for _, w := range results {
		for w.Code == http.StatusConflict {
			rep.InFlight409++
			wait, _ := strconv.Atoi(w.Header().Get("Retry-After"))
			t := time.NewTimer(min(time.Duration(wait)*time.Second, cfg.PaymentLatency))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			*w = *send(hs[rep.InFlight409%2], key, body)
		}
	}
	for _, w := range results {
		if w.Header().Get(idempotency.HeaderReplayed) == "true" && bytes.Equal(w.Body.Bytes(), first) {
			rep.Replays++
		}
	}
	rep.Requests = cfg.Retries + rep.InFlight409
	if w := send(hs[0], key, `{"expert":42,"slot":"2027-01-05T11:00","amount":9000}`); w.Code == http.StatusUnprocessableEntity {
		rep.Mismatch422++
	}
	if w := send(hs[1], "", body); w.Code == http.StatusBadRequest {
		rep.Missing400++
	}
	rep.HandlerRuns = int(runs.Load())
	rep.Charges = len(psp.charges)
	return nil
}

func doubleSubmit(ctx context.Context, cfg Config, ns string, rep *Report) error {
	s, err := newStore(ctx, cfg, ns+"-form", idempotency.DefaultFormRetention)
	if err != nil {
		return err
	}
	defer s.Close()
	var runs atomic.Int32
	mw, err := idempotency.NewMiddleware(s, idempotency.FormRoute("form_token",
		func(r *http.Request) (string, error) { return r.Header.Get("X-Session"), nil }, 10*time.Second))
	if err != nil {
		return err
	}
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		t := time.NewTimer(cfg.PaymentLatency) // the booking takes a moment
		<-t.C
		http.Redirect(w, r, "/bookings/b_2", http.StatusSeeOther)
	}))
	token := idempotency.NewFormToken()
	form := url.Values{"form_token": {token}, "expert": {"42"}, "slot": {"11:00"}}.Encode()
	var wg sync.WaitGroup
	var replays atomic.Int32
	for range 2 { // the double click
		wg.Go(func() {
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/book", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("X-Session", "session-"+ns)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Header().Get(idempotency.HeaderReplayed) == "true" {
				replays.Add(1)
			}
		})
	}
	wg.Wait()
	rep.FormSubmits, rep.FormRuns, rep.FormReplays = 2, int(runs.Load()), int(replays.Load())
	return nil
}

func verificationCode(ctx context.Context, cfg Config, ns string, rep *Report) error {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	s, err := onetime.New(ctx, &onetime.Options{Client: cfg.Client, Namespace: ns + "-otp", Secret: secret,
		AllowEvictingRedis: cfg.AllowEvictingRedis})
	if err != nil {
		return err
	}
	code, err := s.MintCode(ctx, "verify-phone", "user-7", 10*time.Minute)
	if err != nil {
		return err
	}
	wrong := fmt.Sprintf("%06d", (mustAtoi(code)+1)%1000000)
	if err := s.ConsumeCode(ctx, "verify-phone", "user-7", wrong); errors.Is(err, onetime.ErrWrongCode) {
		rep.CodeWrong++
	} else {
		return fmt.Errorf("idemdemo: wrong code: %v", err)
	}
	if err := s.ConsumeCode(ctx, "verify-phone", "user-7", code); err != nil {
		return err
	}
	rep.CodeAccepted++
	if err := s.ConsumeCode(ctx, "verify-phone", "user-7", code); errors.Is(err, onetime.ErrExpiredOrUsed) {
		rep.CodeReused++
	}
	return nil
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
