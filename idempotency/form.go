package idempotency

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"
)

// DefaultFormRetention is a retention suited to form double-submits: long
// enough for a double click, a reload or a back-and-resubmit, short enough
// not to keep every form for a day.
const DefaultFormRetention = 15 * time.Minute

// NewFormToken returns a random form token (128 bits, base64url) to put in
// a hidden field of a form when it is rendered. Submitting the form twice
// sends the same token, which [FormKey] turns into the idempotency key.
func NewFormToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// FormKey returns a RouteOptions.Key that reads the key from the field of
// an application/x-www-form-urlencoded body: form double-submit protection
// is the same primitive as an API's Idempotency-Key, keyed by the form's
// token. A field given twice is an error; no field means no key.
func FormKey(field string) func(r *http.Request, body []byte) (string, bool, error) {
	return func(r *http.Request, body []byte) (string, bool, error) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/x-www-form-urlencoded" {
			return "", false, nil
		}
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return "", true, fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		vs := q[field]
		switch len(vs) {
		case 0:
			return "", false, nil
		case 1:
			return vs[0], true, checkKey(vs[0])
		}
		return "", true, fmt.Errorf("%w: %d %s fields", ErrInvalidKey, len(vs), field)
	}
}

// FormRoute returns RouteOptions for a form posted with a token in field,
// scoped by scope (the session): a second submission while the first runs
// waits for it (up to wait) and gets its response, as does every later
// submission within the Store's retention. Use a Store of its own with a
// short Retention (DefaultFormRetention) for forms.
func FormRoute(field string, scope func(*http.Request) (string, error), wait time.Duration) *RouteOptions {
	return &RouteOptions{
		Key:          FormKey(field),
		Scope:        scope,
		WaitInFlight: wait,
		// A form's fields may differ between two clicks (a timestamp the
		// page adds); the token alone says it is the same submission.
		Fingerprint: func(r *http.Request, _ []byte) ([]byte, error) {
			return []byte(r.Method + " " + r.URL.Path), nil
		},
	}
}
