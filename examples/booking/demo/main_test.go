package demo_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// As cmd/demo does: the demo reports an absent Redis in a line of its
	// own, and go-redis's log lines would only repeat it.
	redis.SetLogger(nopLogger{})
	goleak.VerifyTestMain(m,
		// ristretto's Close does not wait for its background goroutines.
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		// go-redis pool reapers exit asynchronously after Client.Close.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

type nopLogger struct{}

func (nopLogger) Printf(context.Context, string, ...any) {}
