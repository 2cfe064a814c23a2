package demo_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/ratelimit"
	"github.com/tiercache/tiercache/ratelimit/demo"
)

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"))
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	require.Len(t, demo.Endpoints(2), 8)
	_, err := ratelimit.New(&ratelimit.Options{Policies: demo.Policies(3), ActorSecret: []byte("0123456789abcdef")})
	require.NoError(t, err)
}

func TestRun(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rep, err := demo.Run(t.Context(), demo.Config{Client: srv.Client(t)})
	require.NoError(t, err)
	require.Len(t, rep.Rows, 2)
	require.Equal(t, 5, rep.Rows[0].Allowed)
	require.Equal(t, 75, rep.Rows[0].Denied)
	require.Equal(t, 30, rep.Rows[1].Allowed)
	require.Equal(t, 50, rep.Rows[1].Denied)
	require.Positive(t, rep.Rows[0].BySource[ratelimit.SourceDenialCache])
	var b bytes.Buffer
	require.NoError(t, rep.Print(&b))
	t.Log("\n" + b.String())
}

func TestRun_noRedis(t *testing.T) {
	t.Parallel()
	rep, err := demo.Run(t.Context(), demo.Config{})
	require.NoError(t, err)
	require.Zero(t, rep.Rows[0].Allowed, "role changes fail closed")
	require.Equal(t, 80, rep.Rows[0].BySource[ratelimit.SourceFailClosed])
	require.Equal(t, 30, rep.Rows[1].Allowed, "15 per instance: each its half of 30")
	require.Equal(t, 80, rep.Rows[1].BySource[ratelimit.SourceLocal])
	var b bytes.Buffer
	require.NoError(t, rep.Print(&b))
	t.Log("\n" + b.String())
}
