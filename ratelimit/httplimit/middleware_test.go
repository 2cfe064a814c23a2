package httplimit_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/ratelimit"
	"github.com/tiercache/tiercache/ratelimit/httplimit"
)

var policies = []ratelimit.Policy{
	{Name: "admin_all", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(100, 10*time.Minute)}},
	{Name: "role_changes", Algorithm: ratelimit.SlidingLog, Limits: []ratelimit.Limit{ratelimit.Per(5, time.Hour)},
		Include: []string{"admin_all"}, Outage: ratelimit.FailClosed},
	{Name: "profile", Algorithm: ratelimit.SlidingWindow, Limits: []ratelimit.Limit{ratelimit.Per(30, 5*time.Minute)}},
}

func limiter(t *testing.T, rdb redis.UniversalClient) *ratelimit.Limiter {
	t.Helper()
	return ratelimit.Must(&ratelimit.Options{Client: rdb, Policies: policies, ActorSecret: []byte("0123456789abcdef0123")})
}

// byHeader takes the actor from a header, as an authentication middleware
// would put it in the context.
func byHeader(r *http.Request) (string, error) {
	a := r.Header.Get("X-Admin")
	if a == "" {
		return "", errors.New("no admin")
	}
	return "admin:" + a, nil
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })

func do(h http.Handler, admin string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/admin/users/9/roles", nil)
	if admin != "" {
		r.Header.Set("X-Admin", admin)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

type problem struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	ViolatedPolicies []string `json:"violated-policies"`
}

func TestMiddleware_Handler(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	h := httplimit.Must(limiter(t, srv.Client(t)), "role_changes", byHeader).Handler(ok)

	for i := range 5 {
		w := do(h, "42")
		require.Equal(t, http.StatusNoContent, w.Code)
		require.Equal(t, `"role_changes";q=5;w=3600, "admin_all";q=100;w=600`, w.Header().Get("RateLimit-Policy"))
		rl := w.Header().Get("RateLimit")
		require.True(t, strings.HasPrefix(rl, `"role_changes";r=`+string(rune('4'-i))+";t="), rl)
		require.Contains(t, rl, `"admin_all";r=`)
		require.Empty(t, w.Header().Get("Retry-After"))
	}
	w := do(h, "42")
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	require.Contains(t, w.Header().Get("RateLimit"), `"role_changes";r=0;t=`)
	ra := w.Header().Get("Retry-After")
	require.Regexp(t, `^(3[0-5]\d\d|3600)$`, ra, "about an hour")
	var p problem
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	require.Equal(t, httplimit.ProblemQuotaExceeded, p.Type)
	require.Equal(t, 429, p.Status)
	require.Equal(t, []string{"role_changes"}, p.ViolatedPolicies)
	// The same from the denial cache, whose decision names the window that
	// denied in its summary only.
	w2 := do(h, "42")
	require.Equal(t, http.StatusTooManyRequests, w2.Code)
	require.Regexp(t, `^(3[0-5]\d\d|3600)$`, w2.Header().Get("Retry-After"))
	require.Regexp(t, `^"role_changes";r=0;t=(3[0-5]\d\d|3600)$`, w2.Header().Get("RateLimit"))
	var p2 problem
	require.NoError(t, json.Unmarshal(w2.Body.Bytes(), &p2))
	require.Equal(t, []string{"role_changes"}, p2.ViolatedPolicies)
	// Another admin is not limited; no field names the actor.
	w3 := do(h, "43")
	require.Equal(t, http.StatusNoContent, w3.Code)
	for k, v := range w3.Header() {
		require.NotContains(t, strings.Join(v, ","), "admin:43", k)
	}
	// No actor: the error handler, 500 by default.
	require.Equal(t, http.StatusInternalServerError, do(h, "").Code)
}

func TestMiddleware_Handler_outage(t *testing.T) {
	t.Parallel()
	// No Redis at all: every decision is the outage mode's.
	l := limiter(t, nil)
	closed := httplimit.Must(l, "role_changes", byHeader).Handler(ok)
	w := do(closed, "42")
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.NotEmpty(t, w.Header().Get("Retry-After"))
	require.Empty(t, w.Header().Get("RateLimit"), "nothing is known of the quota")
	var p problem
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	require.Equal(t, httplimit.ProblemTemporaryReducedCapacity, p.Type)

	local := httplimit.Must(l, "profile", byHeader).Handler(ok)
	codes := map[int]int{}
	for range 40 {
		codes[do(local, "7").Code]++
	}
	require.Equal(t, map[int]int{http.StatusNoContent: 30, http.StatusTooManyRequests: 10}, codes)
	require.Equal(t, uint64(41), l.Stats().Fallbacks())
}

func TestMiddleware_cost(t *testing.T) {
	t.Parallel()
	l := limiter(t, nil)
	var got error
	h := httplimit.Must(l, "profile", byHeader,
		httplimit.WithCost(func(*http.Request) int { return 31 }),
		httplimit.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, err error) {
			got = err
			w.WriteHeader(http.StatusTeapot)
		})).Handler(ok)
	require.Equal(t, http.StatusTeapot, do(h, "1").Code)
	require.ErrorIs(t, got, ratelimit.ErrInvalidCost)
}
