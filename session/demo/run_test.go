package demo_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/session/demo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

func TestRun(t *testing.T) {
	srv := redistest.Start(t)
	rep, err := demo.Run(t.Context(), demo.Config{
		NewClient: func() redis.UniversalClient { return redis.NewClient(srv.Options()) },
		Users:     10, Requests: 2000,
		// A loaded machine (-race, shared cores) can take longer than
		// the 200 ms default over a call: the test expects no fallback.
		Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.Equal(t, 20, rep.Sessions)
	require.Equal(t, 2, rep.Revoked)
	require.Zero(t, rep.Fallbacks)
	require.Less(t, rep.RoundTripsPerRequest, 0.05, "reads are served from L1")
	var buf bytes.Buffer
	require.NoError(t, rep.Print(&buf))
	t.Log("\n" + buf.String())
	n, err := srv.Client(t).DBSize(t.Context()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the demo removed its keys")
}
