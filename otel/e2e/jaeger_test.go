package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/redistest"
	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/tier"
)

const (
	otlpHTTP  = "127.0.0.1:4318"
	queryBase = "http://127.0.0.1:16686"
)

// jaeger starts the Jaeger binary named by $JAEGER_BIN (run.sh builds it)
// with jaeger.yaml, waits until its query API answers, and kills it when
// the test ends.
func jaeger(t *testing.T) {
	t.Helper()
	bin := os.Getenv("JAEGER_BIN")
	if bin == "" {
		t.Fatal("JAEGER_BIN is not set: run otel/e2e/run.sh, which builds Jaeger and sets it")
	}
	cfg, err := filepath.Abs("jaeger.yaml")
	require.NoError(t, err)
	logPath := filepath.Join(t.TempDir(), "jaeger.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("jaeger log:\n%s", b)
		}
	})

	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(queryBase + "/api/services")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("jaeger exited: %v\n%s", err, b)
		case <-deadline.C:
			t.Fatalf("jaeger did not answer on %s within 60 s", queryBase)
		case <-tick.C:
		}
	}
}

// The Jaeger query API's JSON (the parts the test reads).
type (
	jTraces struct {
		Data []jTrace `json:"data"`
	}
	jTrace struct {
		TraceID string  `json:"traceID"`
		Spans   []jSpan `json:"spans"`
	}
	jSpan struct {
		SpanID        string       `json:"spanID"`
		OperationName string       `json:"operationName"`
		References    []jReference `json:"references"`
		Duration      int64        `json:"duration"`
		Tags          []jKV        `json:"tags"`
		Logs          []jLog       `json:"logs"`
	}
	jReference struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	}
	jKV struct {
		Key   string `json:"key"`
		Type  string `json:"type"`
		Value any    `json:"value"`
	}
	jLog struct {
		Fields []jKV `json:"fields"`
	}
)

func tags(kvs []jKV) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// events returns the span's events (Jaeger "logs") named name, as maps.
func (s jSpan) events(name string) []map[string]any {
	var out []map[string]any
	for _, l := range s.Logs {
		f := tags(l.Fields)
		if f["event"] == name {
			out = append(out, f)
		}
	}
	return out
}

// fetchTraces reads the traces of service from Jaeger until there are at
// least want of them (spans arrive in batches).
func fetchTraces(t *testing.T, service string, want int) ([]jTrace, []byte) {
	t.Helper()
	q := url.Values{"service": {service}, "limit": {"1000"}, "lookback": {"1h"}}
	var (
		data []jTrace
		raw  []byte
	)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		resp, err := http.Get(queryBase + "/api/traces?" + q.Encode())
		require.NoError(c, err)
		raw, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(c, err)
		require.Equal(c, http.StatusOK, resp.StatusCode, "%s", raw)
		var tr jTraces
		require.NoError(c, json.Unmarshal(raw, &tr), "%s", raw)
		data = tr.Data
		require.GreaterOrEqual(c, len(data), want, "traces in Jaeger")
	}, 30*time.Second, 200*time.Millisecond)
	return data, raw
}

// newRedis returns a client built from o, closed when the test ends.
func newRedis(t *testing.T, o *redis.Options) *redis.Client {
	t.Helper()
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitL2 waits until the n keys are in L2: a flight writes L2 after it has
// answered its callers.
func waitL2(t *testing.T, rdb *redis.Client, c *tier.Cache[*profile], key func(int) string, n int) {
	t.Helper()
	full := make([]string, n)
	for i := range full {
		full[i] = c.Key(key(i + 1))
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := rdb.Exists(t.Context(), full...).Result()
		require.NoError(c, err)
		require.Equal(c, int64(n), got, "keys in L2")
	}, 10*time.Second, 10*time.Millisecond)
}

var hexHash = regexp.MustCompile(`^[0-9a-f]{16}$`)

type profile struct {
	ID    int    `msgpack:"id"`
	Email string `msgpack:"email"`
	Name  string `msgpack:"name"`
}

// TestJaeger runs a small workload through two instances of a cache that
// share a real Redis, exporting spans over OTLP to a real Jaeger; kills
// Redis part way; then checks in Jaeger's API that the L2 hits, the origin
// loads and the fallbacks are there with the right attributes, and that no
// key or value is.
func TestJaeger(t *testing.T) {
	jaeger(t)
	ctx := t.Context()
	service := fmt.Sprintf("tiercache-e2e-%d", time.Now().UnixNano())

	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(otlpHTTP), otlptracehttp.WithInsecure())
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond)),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	obs := tierotel.New(tierotel.WithTracerProvider(tp))
	app := tp.Tracer("e2e-app")

	srv := redistest.Start(t)
	ropts := srv.Options()
	ropts.MaxRetries = -1 // no retries against a dead Redis: one failure per read
	l2 := goredis.Must(newRedis(t, ropts), nil)
	opts := func() *tier.Options[*profile] {
		return &tier.Options[*profile]{
			Namespace: "profiles", L2: l2, Observer: obs,
			KeyHashSecret:   []byte("e2e fleet secret"),
			BreakerFailures: 3, BreakerCooldown: time.Minute,
		}
	}
	a, err := tier.New(opts())
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	b, err := tier.New(opts())
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	email := func(id int) string { return fmt.Sprintf("patient%d@example.com", id) }
	key := func(id int) string { return "user:" + email(id) }
	load := func(_ context.Context, k string) (*profile, error) {
		var id int
		_, err := fmt.Sscanf(strings.TrimPrefix(k, "user:patient"), "%d", &id)
		return &profile{ID: id, Email: email(id), Name: fmt.Sprint("Patient ", id)}, err
	}
	request := func(c *tier.Cache[*profile], route string, id int) {
		rctx, span := app.Start(ctx, route, trace.WithAttributes(semconv.HTTPRoute(route)))
		defer span.End()
		p, err := c.GetOrLoad(rctx, key(id), load)
		require.NoError(t, err)
		require.Equal(t, email(id), p.Email)
	}

	// 1. Instance a loads five profiles from the origin and writes them to L2.
	for id := 1; id <= 5; id++ {
		request(a, "GET /a/profiles/{id}", id)
	}
	waitL2(t, newRedis(t, ropts), a, key, 5)
	// 2. Instance b finds them in L2.
	for id := 1; id <= 5; id++ {
		request(b, "GET /b/profiles/{id}", id)
	}
	// 3. Redis dies: three failed L2 reads open the breaker, then reads skip L2.
	srv.Kill()
	for id := 101; id <= 106; id++ {
		request(b, "GET /b/profiles/{id} (redis down)", id)
	}
	require.NoError(t, tp.ForceFlush(ctx))

	traces, raw := fetchTraces(t, service, 16)
	if out := os.Getenv("E2E_TRACES_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, raw, 0o600))
	}
	require.NotContains(t, string(raw), "example.com", "no key or value reaches Jaeger")
	require.NotContains(t, string(raw), "user:", "no key reaches Jaeger")

	var l2Hits, loads, l2Failures, breakerFallbacks int
	for _, tr := range traces {
		byID := map[string]jSpan{}
		for _, s := range tr.Spans {
			byID[s.SpanID] = s
		}
		for _, s := range tr.Spans {
			tg := tags(s.Tags)
			if strings.HasPrefix(s.OperationName, "tiercache ") {
				require.Equal(t, "profiles", tg["cache.name"], s.OperationName)
				require.Regexp(t, hexHash, tg["cache.key.hash"], s.OperationName)
				require.Len(t, s.References, 1, "%s has a parent", s.OperationName)
				parent, ok := byID[s.References[0].SpanID]
				require.True(t, ok, "%s: parent in the same trace", s.OperationName)
				require.True(t, strings.HasPrefix(parent.OperationName, "GET /"), "%s under %s", s.OperationName, parent.OperationName)
			}
			switch {
			case s.OperationName == "tiercache l2.get" && tg["cache.hit"] == true:
				require.Equal(t, "l2", tg["cache.tier"])
				require.Nil(t, tg["error"])
				l2Hits++
			case s.OperationName == "tiercache l2.get" && tg["otel.status_code"] == "ERROR":
				require.Equal(t, "l2", tg["cache.tier"])
				require.Equal(t, false, tg["cache.hit"])
				require.Equal(t, true, tg["error"])
				require.NotEmpty(t, tg["error.type"])
				fb := s.events("cache.fallback")
				require.Len(t, fb, 1, "the failed read says it fell back")
				require.Contains(t, []any{string(tier.ReasonL2Error), string(tier.ReasonL2Timeout)}, fb[0]["cache.fallback.reason"])
				l2Failures++
			case s.OperationName == "tiercache load":
				require.Equal(t, "origin", tg["cache.tier"])
				require.Equal(t, true, tg["cache.load.found"])
				require.Nil(t, tg["error"], "a load that found the key is not an error")
				loads++
			case strings.HasSuffix(s.OperationName, "(redis down)"):
				for _, fb := range s.events("cache.fallback") {
					if fb["cache.fallback.reason"] == string(tier.ReasonBreakerOpen) {
						breakerFallbacks++
					}
				}
			}
		}
	}
	t.Logf("Jaeger has %d traces: %d L2 hits, %d origin loads, %d failed L2 reads, %d breaker-open fallbacks",
		len(traces), l2Hits, loads, l2Failures, breakerFallbacks)
	require.Equal(t, 5, l2Hits, "b's reads of what a loaded")
	require.Equal(t, 5+6, loads, "a's loads and b's while Redis is down")
	require.Equal(t, 3, l2Failures, "BreakerFailures")
	require.Equal(t, 3, breakerFallbacks, "the reads after the breaker opened")
}
