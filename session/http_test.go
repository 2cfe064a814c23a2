package session_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/session"
)

func TestHTTP_loginRenewLogout(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t, nodeOpts{o: session.Options{L1TTL: time.Hour}})
	ha, hb := session.NewHTTP(a.m, nil), session.NewHTTP(b.m, nil)
	mux := func(h *session.HTTP) http.Handler {
		m := http.NewServeMux()
		m.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
			r, err := h.Login(w, r, "user:1", map[string]string{"role": "client"})
			require.NoError(t, err)
			s, ok := session.FromContext(r.Context())
			require.True(t, ok)
			_, _ = w.Write([]byte(s.User()))
		})
		m.HandleFunc("POST /elevate", func(w http.ResponseWriter, r *http.Request) {
			r, err := h.Renew(w, r)
			require.NoError(t, err)
			s, _ := session.FromContext(r.Context())
			_, _ = w.Write([]byte(s.User()))
		})
		m.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
			require.NoError(t, h.Logout(w, r))
		})
		m.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
			s, ok := session.FromContext(r.Context())
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = w.Write([]byte(s.User()))
		})
		return h.Handler(m)
	}
	srvA, srvB := mux(ha), mux(hb)
	do := func(h http.Handler, method, path string, c *http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("User-Agent", "test-agent")
		if c != nil {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	cookieOf := func(w *httptest.ResponseRecorder) *http.Cookie {
		for _, c := range w.Result().Cookies() {
			if c.Name == session.DefaultCookieName {
				return c
			}
		}
		return nil
	}

	w := do(srvA, "POST", "/login", nil)
	require.Equal(t, "user:1", w.Body.String())
	c := cookieOf(w)
	require.NotNil(t, c)
	require.True(t, c.HttpOnly)
	require.True(t, c.Secure)
	require.Equal(t, http.SameSiteLaxMode, c.SameSite)
	require.Zero(t, c.MaxAge, "a browser-session cookie")
	require.Equal(t, "/", c.Path)
	require.Equal(t, "no-store", w.Header().Get("Cache-Control"))

	require.Equal(t, "user:1", do(srvB, "GET", "/me", c).Body.String())
	require.Equal(t, http.StatusUnauthorized, do(srvB, "GET", "/me", nil).Code)

	// A second login from the same browser ends the first session.
	w = do(srvA, "POST", "/login", c)
	c2 := cookieOf(w)
	require.NotEqual(t, c.Value, c2.Value)
	require.Eventually(t, func() bool { return do(srvB, "GET", "/me", c).Code == http.StatusUnauthorized }, 5*time.Second, time.Millisecond)

	// Privilege change: a new id, the old one dead everywhere.
	w = do(srvB, "POST", "/elevate", c2)
	require.Equal(t, "user:1", w.Body.String())
	c3 := cookieOf(w)
	require.NotEqual(t, c2.Value, c3.Value)
	w = do(srvA, "GET", "/me", c2)
	require.Eventually(t, func() bool { return do(srvA, "GET", "/me", c2).Code == http.StatusUnauthorized }, 5*time.Second, time.Millisecond)
	// A request sent with the old cookie (say, in parallel with the one
	// that renewed) must not clear the new one the browser holds now.
	require.Nil(t, cookieOf(do(srvA, "GET", "/me", c2)), "a dead cookie's response sets no cookie")
	require.Equal(t, "user:1", do(srvA, "GET", "/me", c3).Body.String())

	do(srvA, "POST", "/logout", c3)
	require.Eventually(t, func() bool { return do(srvB, "GET", "/me", c3).Code == http.StatusUnauthorized }, 5*time.Second, time.Millisecond)
	_ = w
}
