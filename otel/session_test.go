package tierotel_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/session"
)

// TestSessionObserver runs a session.Manager on a real redis-server with a
// SessionObserver and checks the metrics and span events of its life
// cycle: created, new_device, new_ip, renewed, revoked (two sessions, one
// event), and a write refused once Redis is gone (fallback, with its
// duration and error.type). It also checks that neither the user, the
// device, the addresses nor a token reaches any attribute.
func TestSessionObserver(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	srv, rdb, _ := redisL2(t)
	m, err := session.New(&session.Options{
		Client:    rdb,
		Secret:    []byte("otel-session-secret"),
		Namespace: "otelsess",
		Timeout:   5 * time.Second, // a loaded machine must not turn a call into a fallback
		Observer:  tierotel.NewSessionObserver(tierotel.WithMeterProvider(tm.mp)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })

	const user, phone, laptop = "alice@example.com", "Phone/1.0", "Laptop/2.0"
	const ip1, ip2 = "192.0.2.1", "198.51.100.7"
	ctx, span := tm.request(t.Context())
	tok1, err := m.Create(ctx, user, session.Client{Device: phone, IP: ip1}, map[string]string{"role": "client"})
	require.NoError(t, err)
	tok2, err := m.Create(ctx, user, session.Client{Device: laptop, IP: ip1}, nil)
	require.NoError(t, err)
	_, err = m.GetFrom(ctx, tok1, ip2)
	require.NoError(t, err)
	tok3, err := m.Renew(ctx, tok2)
	require.NoError(t, err)
	n, err := m.RevokeAll(ctx, user)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	srv.Kill()
	_, err = m.Create(ctx, user, session.Client{}, nil)
	require.ErrorIs(t, err, session.ErrUnavailable)
	span.End()

	rm := tm.collect(t)
	events := metricNamed(t, rm, "tiercache.session.events")
	ev := func(kind string, kvs ...attribute.KeyValue) int64 {
		return sumOf(t, events, append([]attribute.KeyValue{attribute.String("session.event", kind)}, kvs...)...)
	}
	require.Equal(t, int64(2), ev("created"))
	require.Equal(t, int64(1), ev("new_device"))
	require.Equal(t, int64(1), ev("new_ip"))
	require.Equal(t, int64(1), ev("renewed"))
	require.Equal(t, int64(1), ev("revoked", attribute.String("session.reason", "revoke_all")))
	require.Equal(t, int64(2), sumOf(t, metricNamed(t, rm, "tiercache.session.revoked"), attribute.String("session.reason", "revoke_all")))
	fb := []attribute.KeyValue{attribute.String("session.fallback.op", "write"), attribute.String("session.fallback.reason", session.ReasonRedisError)}
	// The fallback's point carries an error.type too (whatever the Go
	// type of go-redis's dial error): find it by the other attributes.
	var fallbacks int64
	for _, dp := range events.Data.(metricdata.Sum[int64]).DataPoints {
		if v, _ := dp.Attributes.Value("session.event"); v.AsString() != "fallback" {
			continue
		}
		for _, kv := range fb {
			v, _ := dp.Attributes.Value(kv.Key)
			require.Equal(t, kv.Value, v)
		}
		et, _ := dp.Attributes.Value(semconv.ErrorTypeKey)
		require.NotEmpty(t, et.AsString())
		fallbacks += dp.Value
	}
	require.Equal(t, int64(1), fallbacks)
	require.Equal(t, uint64(1), histCount(t, metricNamed(t, rm, "tiercache.session.fallback.duration"), fb...))

	s := tm.only(t, "GET /profile")
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}
	require.Equal(t, []string{"session.created", "session.created", "session.new_device", "session.new_ip",
		"session.renewed", "session.revoked", "session.fallback"}, names)
	created := attrs(eventsNamed(s, "session.created")[0].Attributes)
	require.Equal(t, m.UserTag(user), created["session.user.hash"])
	require.Equal(t, m.Ref(tok1), created["session.ref"])
	renewed := attrs(eventsNamed(s, "session.renewed")[0].Attributes)
	require.Equal(t, m.Ref(tok3), renewed["session.ref"])
	require.Equal(t, m.Ref(tok2), renewed["session.old_ref"])
	revoked := attrs(eventsNamed(s, "session.revoked")[0].Attributes)
	require.Equal(t, int64(2), revoked["session.count"])

	// Nothing personal, nothing secret: not in span events, not in metric
	// attributes.
	text := telemetryText(tm.spans.Ended(), rm)
	for _, x := range []string{user, phone, laptop, ip1, ip2, tok1, tok2, tok3} {
		require.NotContains(t, text, x)
	}
}
