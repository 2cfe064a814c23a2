package session

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// Defaults of [HTTPOptions].
const (
	// DefaultCookieName is generic on purpose: OWASP advises against names
	// that tell the framework (PHPSESSID, JSESSIONID).
	DefaultCookieName = "id"
)

// HTTPOptions configures an [HTTP]. NewHTTP copies it; a nil *HTTPOptions
// means the defaults.
type HTTPOptions struct {
	// CookieName names the cookie. Default: "id".
	CookieName string
	// Path of the cookie. Default: "/".
	Path string
	// Domain of the cookie. Default: none, the cookie goes back to the
	// origin host only (OWASP: keep the scope narrow).
	Domain string
	// Insecure drops the Secure attribute, for local development over
	// plain HTTP only. Default: false: the cookie is Secure.
	Insecure bool
	// SameSite of the cookie. Default: http.SameSiteLaxMode.
	SameSite http.SameSite
	// ClientIP returns the client's address. Default: the host of
	// r.RemoteAddr (behind a proxy, give one that reads the header your
	// proxy sets, and only that).
	ClientIP func(r *http.Request) string
	// Device returns the device label. Default: the User-Agent.
	Device func(r *http.Request) string
	// Unavailable answers a request whose session could not be checked
	// because Redis is unreachable. Default: 503 with Retry-After: 1 (fail
	// closed: an unverified session is not let through).
	Unavailable http.Handler
}

// HTTP puts a [Manager] in front of net/http handlers: it reads the
// session cookie on every request (from L1: no round trip), and sets and
// clears it on login, renewal and logout. The cookie is HttpOnly, Secure
// and SameSite=Lax by default, and has no Max-Age: a browser session
// cookie, as OWASP advises; the server's timeouts end the session. It is
// safe for concurrent use.
type HTTP struct {
	m *Manager
	o HTTPOptions
}

// NewHTTP returns an HTTP for m.
func NewHTTP(m *Manager, o *HTTPOptions) *HTTP {
	var c HTTPOptions
	if o != nil {
		c = *o
	}
	if c.CookieName == "" {
		c.CookieName = DefaultCookieName
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.ClientIP == nil {
		c.ClientIP = remoteIP
	}
	if c.Device == nil {
		c.Device = func(r *http.Request) string { return r.UserAgent() }
	}
	if c.Unavailable == nil {
		c.Unavailable = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
		})
	}
	return &HTTP{m: m, o: c}
}

type ctxKey struct{}

type reqSession struct {
	s     *Session
	token string
}

// FromContext returns the session of the request whose context is ctx,
// as found by [HTTP.Handler].
func FromContext(ctx context.Context) (*Session, bool) {
	rs, ok := ctx.Value(ctxKey{}).(*reqSession)
	if !ok || rs.s == nil {
		return nil, false
	}
	return rs.s, true
}

// Handler reads the request's session and puts it in the request's
// context ([FromContext]) before calling next. A request without a live
// session goes on without one (next decides: 401, a redirect to the
// login page). Its dead cookie is left alone: the request may be one the
// browser sent with the old cookie while a Renew (or Login) answered with
// a new one, and a clearing Set-Cookie that reached the browser after the
// new cookie would delete it (the same name and path), logging the user
// out. Login replaces a dead cookie and Logout clears one. A request whose
// session cannot be checked because Redis is unreachable is answered by
// HTTPOptions.Unavailable.
func (h *HTTP) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Cookie")
		c, err := r.Cookie(h.o.CookieName)
		if err != nil || c.Value == "" {
			next.ServeHTTP(w, r)
			return
		}
		s, err := h.m.GetFrom(r.Context(), c.Value, h.o.ClientIP(r))
		switch {
		case err == nil:
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, &reqSession{s: s, token: c.Value}))
		case errors.Is(err, ErrNotFound):
			// No session: see above for why the cookie stays.
		default:
			h.o.Unavailable.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Login creates a session for user, ends the one the request came with
// (if any: a new id on every login, OWASP's defence against session
// fixation), and sets the cookie.
func (h *HTTP) Login(w http.ResponseWriter, r *http.Request, user string, fields map[string]string) (*http.Request, error) {
	if old := h.token(r); old != "" {
		if err := h.m.Revoke(r.Context(), old); err != nil && !errors.Is(err, ErrNotPropagated) {
			return r, err
		}
	}
	tok, err := h.m.Create(r.Context(), user, Client{Device: h.o.Device(r), IP: h.o.ClientIP(r)}, fields)
	if err != nil {
		return r, err
	}
	h.set(w, tok)
	return h.with(r, tok), nil
}

// Renew moves the request's session to a new token and sets the cookie:
// call it on every privilege change. It returns the request with the new
// session in its context.
func (h *HTTP) Renew(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	old := h.token(r)
	if old == "" {
		return r, ErrNotFound
	}
	tok, err := h.m.Renew(r.Context(), old)
	if tok == "" {
		return r, err
	}
	h.set(w, tok)
	return h.with(r, tok), err
}

// Logout ends the request's session and clears the cookie.
func (h *HTTP) Logout(w http.ResponseWriter, r *http.Request) error {
	h.clear(w)
	if old := h.token(r); old != "" {
		return h.m.Revoke(r.Context(), old)
	}
	return nil
}

// Token returns the request's session token (to compare with a list's
// refs through Manager.Ref; never log it).
func (h *HTTP) Token(r *http.Request) string { return h.token(r) }

func (h *HTTP) token(r *http.Request) string {
	if rs, ok := r.Context().Value(ctxKey{}).(*reqSession); ok {
		return rs.token
	}
	if c, err := r.Cookie(h.o.CookieName); err == nil {
		return c.Value
	}
	return ""
}

// with returns r with the session of tok in its context (read now, so the
// handler after Login or Renew sees it).
func (h *HTTP) with(r *http.Request, tok string) *http.Request {
	rs := &reqSession{token: tok}
	if s, err := h.m.Get(r.Context(), tok); err == nil {
		rs.s = s
	}
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, rs))
}

func (h *HTTP) cookie(v string) *http.Cookie {
	return &http.Cookie{
		Name: h.o.CookieName, Value: v, Path: h.o.Path, Domain: h.o.Domain,
		Secure: !h.o.Insecure, HttpOnly: true, SameSite: h.o.SameSite,
	}
}

func (h *HTTP) set(w http.ResponseWriter, tok string) {
	http.SetCookie(w, h.cookie(tok))
	// Never cache a response that sets the session cookie.
	w.Header().Set("Cache-Control", `no-store`)
}

func (h *HTTP) clear(w http.ResponseWriter) {
	c := h.cookie("")
	c.MaxAge = -1
	http.SetCookie(w, c)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
