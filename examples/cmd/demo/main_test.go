package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/examples/booking/demo"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestMain(m *testing.M) {
	redis.SetLogger(nopLogger{}) // as main does
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, cfg demo.Config)
		wantErr bool
	}{
		{name: "defaults", check: func(t *testing.T, cfg demo.Config) {
			require.Equal(t, 30*time.Second, cfg.Duration)
			require.Equal(t, defaultRedisAddr, cfg.RedisAddr)
			require.Empty(t, cfg.DatabaseURL)
			require.InDelta(t, 0.98, cfg.ReadRatio, 1e-9)
			require.Equal(t, 5000, cfg.Seed.Profiles)
			require.Equal(t, defaultMetricsAddr, cfg.MetricsAddr)
		}},
		{name: "environment", env: map[string]string{"REDIS_ADDR": "10.0.0.1:6380", "DATABASE_URL": "postgres://x/y"}, check: func(t *testing.T, cfg demo.Config) {
			require.Equal(t, "10.0.0.1:6380", cfg.RedisAddr)
			require.Equal(t, "postgres://x/y", cfg.DatabaseURL)
		}},
		{name: "flags override the environment", args: []string{"-redis", "", "-duration", "2s", "-workers", "3", "-read-ratio", "1", "-seed-profiles", "100", "-zipf", "1.5", "-metrics", ""},
			env: map[string]string{"REDIS_ADDR": "10.0.0.1:6380"}, check: func(t *testing.T, cfg demo.Config) {
				require.Empty(t, cfg.RedisAddr)
				require.Equal(t, 2*time.Second, cfg.Duration)
				require.Equal(t, 3, cfg.Workers)
				require.True(t, cfg.NoWrites)
				require.Equal(t, 100, cfg.Seed.Profiles)
				require.InDelta(t, 1.5, cfg.Zipf, 1e-9)
				require.Empty(t, cfg.MetricsAddr)
			}},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: true},
		{name: "stray argument", args: []string{"now"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			cfg, err := parse(tt.args, env(tt.env), &stderr)
			if tt.wantErr {
				require.Error(t, err)
				require.Contains(t, stderr.String(), "Usage:")
				return
			}
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}
}

func TestParse_Help(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	_, err := parse([]string{"-h"}, env(nil), &stderr)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, s := range []string{"DATABASE_URL", "REDIS_ADDR", "-duration", "-workers", "-read-ratio", "-seed-profiles", "-metrics", "L1-only"} {
		require.Contains(t, stderr.String(), s)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	out := runDemo(t, "")
	require.Contains(t, out, "No Redis configured")
	require.Contains(t, out, "L1 hit rate")
	require.Contains(t, out, "p50 / p99")
	require.Equal(t, 1, strings.Count(out, "requests (L1 hits + misses)"))
	require.Contains(t, out, "Prometheus metrics at http://127.0.0.1:")
	require.Contains(t, out, "booking app's targets")
	require.Contains(t, out, "rate limits (no Redis: outage modes)")
	require.Contains(t, out, "Idempotency and session demos skipped")
	require.Contains(t, out, "Notification and dashboard demo skipped")
}

func TestRun_Redis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	out := runDemo(t, srv.Addr())
	for _, header := range []string{"confirmations (digested)", "bookings, last hour", "rate limits (Redis)", "idempotency and one-time codes", "sessions (2 instances)"} {
		require.Contains(t, out, header)
	}
	keys, err := srv.Client(t).Keys(t.Context(), "demo-notify-*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "the notification demo removed its keys")
}

// runDemo runs a short demo against redisAddr ("" for none) and returns
// its output.
func runDemo(t *testing.T, redisAddr string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-duration", "500ms", "-redis", redisAddr, "-redis-timeout", "5s", "-metrics", "127.0.0.1:0", "-seed-profiles", "500", "-seed-experts", "100", "-seed-appointments", "1000"},
		env(nil), &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	return stdout.String()
}
