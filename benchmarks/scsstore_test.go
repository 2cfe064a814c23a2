package benchmarks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/benchmarks/internal/redisproc"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/session/scsstore"
)

// session/scsstore is checked against scs itself here (the root module
// does not import scs).
var _ scs.CtxStore = (*scsstore.Store)(nil)

// TestSCSStore_LoadAndSave runs scs's middleware on two instances, each
// with its own scsstore and bus over one redis-server: a value put by a
// request on A is read by a request on B with A's cookie, and after a
// logout (Destroy) on A, B finds no session once the bus has delivered.
func TestSCSStore_LoadAndSave(t *testing.T) {
	srv, err := redisproc.StartOwned()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	type instance struct {
		sm  *scs.SessionManager
		bus *invalidate.Bus
	}
	newInstance := func() instance {
		rdb, busClient := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}), redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
		bus := invalidate.Must(busClient, nil)
		st := scsstore.Must(&scsstore.Options{Client: rdb, Invalidator: bus, Secret: sessionSecret, L1TTL: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- bus.Run(ctx) }()
		t.Cleanup(func() {
			_ = st.Close()
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			_ = rdb.Close()
			_ = busClient.Close()
		})
		sm := scs.New()
		sm.Store = st
		return instance{sm: sm, bus: bus}
	}
	a, b := newInstance(), newInstance()
	var cookie *http.Cookie
	serve := func(in instance, h func(w http.ResponseWriter, r *http.Request)) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest("GET", "/", nil)
		if cookie != nil {
			r.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		in.sm.LoadAndSave(http.HandlerFunc(h)).ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == in.sm.Cookie.Name {
				cookie = c
			}
		}
		return rec
	}
	serve(a, func(w http.ResponseWriter, r *http.Request) { a.sm.Put(r.Context(), "role", "client") })
	if cookie == nil || cookie.Value == "" {
		t.Fatal("no session cookie")
	}
	var role string
	serve(b, func(w http.ResponseWriter, r *http.Request) { role = b.sm.GetString(r.Context(), "role") })
	if role != "client" {
		t.Fatalf("B read role %q, want client", role)
	}
	dropped := b.bus.Stats().KeysDropped
	serve(a, func(w http.ResponseWriter, r *http.Request) {
		if err := a.sm.Destroy(r.Context()); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for b.bus.Stats().KeysDropped == dropped {
		if time.Now().After(deadline) {
			t.Fatal("B did not hear the logout")
		}
		time.Sleep(time.Millisecond) // polling a counter, as require.Eventually does
	}
	serve(b, func(w http.ResponseWriter, r *http.Request) { role = b.sm.GetString(r.Context(), "role") })
	if role != "" {
		t.Fatalf("B still reads role %q after the logout on A", role)
	}
}
