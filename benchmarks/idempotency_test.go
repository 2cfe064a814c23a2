package benchmarks

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/idempotency"
)

// roundTrips is a go-redis hook that counts the commands (and pipelines)
// sent, one per round trip.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// firstKeys numbers the keys of middleware=first across runs.
var firstKeys atomic.Int64

// BenchmarkIdempotency measures what the middleware adds to a request, in
// time and in Redis round trips, against the bare handler: a first request
// (the handler runs: begin and complete scripts, a heartbeat goroutine),
// and a replay from this instance's copy (l1) or from Redis (redis). The
// handler answers 200 bytes of JSON to a 100-byte body; requests go
// straight to ServeHTTP, without a network, so that only the middleware's
// cost differs.
func BenchmarkIdempotency(b *testing.B) {
	rdb := newRedis(b)
	rt := &roundTrips{}
	rdb.AddHook(rt)
	ctx := context.Background()
	newStore := func(name string, noL1 bool) *idempotency.Store {
		s, err := idempotency.New(ctx, &idempotency.Options{Client: rdb, Namespace: "bench-idem-" + runID + "-" + name,
			Retention: keyTTL, NoL1: noL1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	respBody := bytes.Repeat([]byte("x"), 200)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(respBody)
	})
	reqBody := bytes.Repeat([]byte("y"), 100)
	serve := func(b *testing.B, h http.Handler, key string) {
		r := httptest.NewRequest("POST", "/bookings", bytes.NewReader(reqBody))
		if key != "" {
			r.Header.Set(idempotency.HeaderKey, key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	run := func(b *testing.B, h http.Handler, key func(i int) string) {
		b.ReportAllocs()
		before := rt.n.Load()
		i := 0
		for b.Loop() {
			serve(b, h, key(i))
			i++
		}
		b.ReportMetric(float64(rt.n.Load()-before)/float64(i), "roundtrips/op")
	}

	b.Run("handler=bare", func(b *testing.B) {
		run(b, handler, func(int) string { return "" })
	})
	b.Run("middleware=first", func(b *testing.B) {
		mw, _ := idempotency.NewMiddleware(newStore("first", false), nil)
		h := mw.Wrap(handler)
		// b.Loop runs the body more than once (and -count repeats it): a
		// counter that never restarts keeps every key new.
		run(b, h, func(int) string { return "first-" + strconv.FormatInt(firstKeys.Add(1), 10) })
	})
	b.Run("middleware=replay,from=l1", func(b *testing.B) {
		s := newStore("replay-l1", false)
		mw, _ := idempotency.NewMiddleware(s, nil)
		h := mw.Wrap(handler)
		serve(b, h, "replay")
		// The L1 write is asynchronous: replay until a replay costs no
		// round trip, so that the loop measures the L1 path.
		for n := rt.n.Load(); ; n = rt.n.Load() {
			serve(b, h, "replay")
			if rt.n.Load() == n {
				break
			}
		}
		run(b, h, func(int) string { return "replay" })
	})
	b.Run("middleware=replay,from=redis", func(b *testing.B) {
		mw, _ := idempotency.NewMiddleware(newStore("replay-redis", true), nil)
		h := mw.Wrap(handler)
		serve(b, h, "replay")
		run(b, h, func(int) string { return "replay" })
	})
}
