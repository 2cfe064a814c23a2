package httplimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tiercache/tiercache/ratelimit"
	"github.com/tiercache/tiercache/ratelimit/httplimit"
)

func ExampleMiddleware_Handler() {
	l := ratelimit.Must(&ratelimit.Options{
		// Client: rdb in a real application; without one, each policy's
		// outage mode answers (here the local limiter, the default).
		ActorSecret: []byte("the same secret on every instance"),
		Policies: []ratelimit.Policy{{
			Name:      "role_changes",
			Algorithm: ratelimit.SlidingLog,
			Limits:    []ratelimit.Limit{ratelimit.Per(2, time.Hour)},
		}},
	})
	m := httplimit.Must(l, "role_changes", func(r *http.Request) (string, error) {
		return "admin:" + r.Header.Get("X-Admin"), nil // from the authenticated session, in a real application
	})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for range 3 {
		r := httptest.NewRequest(http.MethodPut, "/admin/users/9/roles", nil)
		r.Header.Set("X-Admin", "42")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Printf("%d %s | %s | Retry-After: %q\n", w.Code, w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit"), w.Header().Get("Retry-After"))
	}
	// Output:
	// 204 "role_changes";q=2;w=3600 | "role_changes";r=1;t=3600 | Retry-After: ""
	// 204 "role_changes";q=2;w=3600 | "role_changes";r=0;t=3600 | Retry-After: ""
	// 429 "role_changes";q=2;w=3600 | "role_changes";r=0;t=3600 | Retry-After: "3600"
}
