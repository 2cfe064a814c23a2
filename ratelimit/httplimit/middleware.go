package httplimit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache/ratelimit"
)

// ActorFunc returns the actor a request is limited as. An error refuses
// the request through the error handler (see [WithErrorHandler]).
type ActorFunc func(r *http.Request) (actor string, err error)

// Problem types of draft-ietf-httpapi-ratelimit-headers.
const (
	ProblemQuotaExceeded            = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	ProblemTemporaryReducedCapacity = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

// Middleware limits the requests of one policy. Create it with [New]. It
// is safe for concurrent use.
type Middleware struct {
	l      *ratelimit.Limiter
	policy string
	actor  ActorFunc
	cfg    config
	polHdr string // the RateLimit-Policy field value
}

// New returns a Middleware that asks l for policy, as the actor that actor
// returns, before each request.
func New(l *ratelimit.Limiter, policy string, actor ActorFunc, opts ...Option) (*Middleware, error) {
	if l == nil || actor == nil {
		return nil, fmt.Errorf("httplimit: %w: nil limiter or actor function", ratelimit.ErrInvalidOptions)
	}
	ws, err := l.Quotas(policy)
	if err != nil {
		return nil, fmt.Errorf("httplimit: %w", err)
	}
	items := make([]string, len(ws))
	for i, w := range ws {
		items[i] = fmt.Sprintf("%q;q=%d;w=%d", w.Name, w.Limit, seconds(w.Per))
	}
	return &Middleware{l: l, policy: policy, actor: actor, cfg: newConfig(opts), polHdr: strings.Join(items, ", ")}, nil
}

// Must is like [New] but panics on an error.
func Must(l *ratelimit.Limiter, policy string, actor ActorFunc, opts ...Option) *Middleware {
	m, err := New(l, policy, actor, opts...)
	if err != nil {
		panic(err)
	}
	return m
}

// Handler returns next behind the limit.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, err := m.actor(r)
		if err != nil {
			m.cfg.onError(w, r, fmt.Errorf("httplimit: actor: %w", err))
			return
		}
		n := 1
		if m.cfg.cost != nil {
			n = m.cfg.cost(r)
		}
		d, err := m.l.AllowN(r.Context(), m.policy, actor, n)
		if err != nil {
			m.cfg.onError(w, r, err)
			return
		}
		ws := d.Windows
		if d.Source == ratelimit.SourceDenialCache {
			// A cached denial describes its window in its summary.
			ws = []ratelimit.Window{{Name: d.DeniedBy, Limit: d.Limit, Remaining: d.Remaining, Reset: d.Reset, RetryAfter: d.RetryAfter}}
		}
		h := w.Header()
		h.Set("RateLimit-Policy", m.polHdr)
		if len(ws) > 0 {
			h.Set("RateLimit", rateLimitField(ws))
		}
		if d.Allowed {
			next.ServeHTTP(w, r)
			return
		}
		writeDenied(w, d, ws)
	})
}

// rateLimitField is the RateLimit field value of ws.
func rateLimitField(ws []ratelimit.Window) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(w.Name))
		b.WriteString(";r=")
		b.WriteString(strconv.Itoa(w.Remaining))
		b.WriteString(";t=")
		b.WriteString(strconv.FormatInt(ceilSeconds(w.Reset), 10))
	}
	return b.String()
}

// problem is an RFC 9457 problem detail with the draft's extension.
type problem struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail,omitempty"`
	ViolatedPolicies []string `json:"violated-policies,omitempty"`
}

// writeDenied answers a denied call; ws are its windows.
func writeDenied(w http.ResponseWriter, d ratelimit.Decision, ws []ratelimit.Window) {
	p := problem{
		Type:   ProblemQuotaExceeded,
		Title:  "Quota exceeded",
		Status: http.StatusTooManyRequests,
	}
	if d.Source == ratelimit.SourceFailClosed {
		p.Type = ProblemTemporaryReducedCapacity
		p.Title = "Temporarily unavailable"
		p.Status = http.StatusServiceUnavailable
		p.Detail = "The rate limit of this endpoint cannot be checked right now; it refuses requests until it can."
		p.ViolatedPolicies = []string{d.Policy}
	} else {
		p.Detail = fmt.Sprintf("Retry in %d s.", max(1, ceilSeconds(d.RetryAfter)))
		for _, win := range ws {
			if win.RetryAfter > 0 {
				p.ViolatedPolicies = append(p.ViolatedPolicies, win.Name)
			}
		}
	}
	h := w.Header()
	h.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10))
	writeProblem(w, p)
}

func writeProblem(w http.ResponseWriter, p problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p) // a client gone away is not our error
}

// defaultOnError answers 400 for a cost the policy can never admit, and
// 500 otherwise (an actor that cannot be told is a bug in the
// application's wiring, not the client's fault); the error's text is not
// sent.
func defaultOnError(w http.ResponseWriter, _ *http.Request, err error) {
	p := problem{Type: "about:blank", Title: "Rate limit check failed", Status: http.StatusInternalServerError}
	if errors.Is(err, ratelimit.ErrInvalidCost) {
		p.Title, p.Status = "Request too large for its quota", http.StatusBadRequest
	}
	writeProblem(w, p)
}

// seconds is d in whole seconds, rounded up, at least 1 (the draft's "w").
func seconds(d time.Duration) int64 { return max(1, ceilSeconds(d)) }

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}
