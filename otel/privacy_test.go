package tierotel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tiercache/tiercache/tier"
)

// secrets are personal data that appear in keys and values.
var secrets = []string{
	"alice@example.com",
	"bob.smith+clinic@corp.example",
	"tok_live_9f8e7d6c5b4a3f2e1d0c",
	"eyJhbGciOiJIUzI1NiJ9.c2VjcmV0",
	"rst_0d6c1e0a55f54bbb",
}

type account struct {
	Email string `msgpack:"email"`
	Token string `msgpack:"token"`
	Notes string `msgpack:"notes"`
}

// TestObserver_NoPersonalData drives a cache through every path the
// Observer sees (loads, not found, loader errors, L2 hits, writes, deletes,
// corrupt bytes, refused values, batch reads, Redis dying, the breaker
// opening, L1 drops) with emails and tokens as keys and values, and checks
// that none appears in any span name, attribute, event, status or link, or
// in any metric attribute. With ObserveRawKeys the same scan must find the
// keys, which shows that it looks in the right places.
func TestObserver_NoPersonalData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rawKeys  bool
		wantLeak bool
	}{
		{name: "hashed keys", rawKeys: false, wantLeak: false},
		{name: "raw keys (opt in)", rawKeys: true, wantLeak: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tm := newTelemetry(t)
			srv, rdb, l2 := redisL2(t)
			o := func() *tier.Options[account] {
				return &tier.Options[account]{
					Namespace: "accounts", L2: l2, Observer: tm.obs, ObserveRawKeys: tt.rawKeys,
					MaxValueBytes: 512, BreakerFailures: 2,
				}
			}
			writer, reader := newCache(t, o()), newCache(t, o())
			ctx, req := tm.request(t.Context())

			load := func(_ context.Context, key string) (account, error) {
				switch {
				case strings.HasPrefix(key, "missing:"):
					return account{}, tier.ErrNotFound
				case strings.HasPrefix(key, "broken:"):
					return account{}, errors.New("db: connection reset by peer")
				case strings.HasPrefix(key, "big:"):
					return account{Email: secrets[0], Notes: strings.Repeat(secrets[2], 100)}, nil
				}
				return account{Email: secrets[0], Token: secrets[2], Notes: "reset " + secrets[4] + " for " + secrets[1]}, nil
			}
			keys := []string{
				"user:" + secrets[0], "user:" + secrets[1], "session:" + secrets[3],
				"missing:" + secrets[2], "broken:" + secrets[4], "big:" + secrets[0],
			}
			for _, k := range keys {
				_, _ = writer.GetOrLoad(ctx, k, load)
				_, _ = reader.GetOrLoad(ctx, k, load)
			}
			require.NoError(t, writer.Set(ctx, "token:"+secrets[2], account{Token: secrets[3]}, 0))
			require.NoError(t, writer.Delete(ctx, "user:"+secrets[0], "user:"+secrets[1]))
			require.NoError(t, writer.Delete(ctx, "session:"+secrets[3]))
			require.NoError(t, rdb.Set(ctx, reader.Key("corrupt:"+secrets[1]), "garbage "+secrets[1], 0).Err())
			_, _ = reader.GetOrLoad(ctx, "corrupt:"+secrets[1], load)
			_, _ = reader.GetOrLoadMany(ctx, []string{"many:" + secrets[0], "many:" + secrets[3]},
				func(_ context.Context, ks []string) (map[string]account, error) {
					m := map[string]account{}
					for _, k := range ks {
						m[k] = account{Email: secrets[1], Token: k}
					}
					return m, nil
				})
			writer.DropLocal(ctx)

			srv.Kill()
			for _, k := range []string{"after:" + secrets[0], "after:" + secrets[2], "after:" + secrets[3]} {
				_, _ = writer.GetOrLoad(ctx, k, load)
			}
			require.Error(t, writer.Delete(ctx, "token:"+secrets[2]))
			require.Error(t, writer.Set(ctx, "token:"+secrets[3], account{Token: secrets[3]}, 0))
			// Close waits for the flights, whose last events (a refused
			// value) come after they answer.
			require.NoError(t, writer.Close())
			require.NoError(t, reader.Close())
			req.End()

			text := telemetryText(tm.spans.Ended(), tm.collect(t))
			require.Contains(t, text, "cache.fallback", "the scan covers the failure paths")
			require.Contains(t, text, "cache.decode_error")
			require.Contains(t, text, "cache.value_refused")
			leaked := false
			for _, s := range secrets {
				if strings.Contains(text, s) {
					leaked = true
					if !tt.wantLeak {
						t.Errorf("%q appears in the telemetry", s)
					}
				}
			}
			require.Equal(t, tt.wantLeak, leaked)
		})
	}
}

// telemetryText is every string the spans and metrics carry, one a line.
func telemetryText(spans []sdktrace.ReadOnlySpan, rm metricdata.ResourceMetrics) string {
	var b strings.Builder
	kvs := func(prefix string, kv []attribute.KeyValue) {
		for _, a := range kv {
			fmt.Fprintf(&b, "%s %s=%s\n", prefix, a.Key, a.Value.String())
		}
	}
	for _, s := range spans {
		fmt.Fprintf(&b, "span %s status=%s %q\n", s.Name(), s.Status().Code, s.Status().Description)
		kvs("  attr", s.Attributes())
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "  event %s\n", e.Name)
			kvs("    attr", e.Attributes)
		}
		for _, l := range s.Links() {
			kvs("  link", l.Attributes)
		}
		kvs("  resource", s.Resource().Attributes())
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			fmt.Fprintf(&b, "metric %s %s %s\n", m.Name, m.Description, m.Unit)
			var sets []attribute.Set
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			default:
				fmt.Fprintf(&b, "  data %+v\n", d)
			}
			for _, s := range sets {
				kvs("  point", s.ToSlice())
			}
		}
	}
	return b.String()
}
