package idempotency

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// writeProblem answers with an application/problem+json body. With a docs
// URL the problem's type is that URL and a Link header points to it (as
// the draft shows); without one the type is about:blank and the title is
// the status text, as RFC 9457 asks.
func (m *Middleware) writeProblem(w http.ResponseWriter, status int, title, detail string, retryAfter time.Duration) {
	p := problem{Title: http.StatusText(status), Status: status, Detail: title + ". " + detail}
	if m.o.DocsURL != "" {
		p.Type, p.Title, p.Detail = m.o.DocsURL, title, detail
		w.Header().Add("Link", "<"+m.o.DocsURL+`>; rel="describedby"; type="text/html"`)
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	b, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// problemResult is a problem as a recorded Result.
func problemResult(status int, title, detail string) Result {
	b, _ := json.Marshal(problem{Title: http.StatusText(status), Status: status, Detail: title + ". " + detail})
	return Result{Status: status, Header: http.Header{"Content-Type": {"application/problem+json"}}, Body: b}
}
