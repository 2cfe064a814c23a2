package invalidate_test

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// ExampleBus runs one instance's bus and gives it to a cache. It needs a
// Redis, so it has no output block.
func ExampleBus() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	bus := invalidate.Must(rdb, nil)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Run(ctx) }()
	defer func() { stop(); <-done }() // Run returns after its goroutines exit

	c := tier.Must(&tier.Options[string]{Namespace: "sessions", L2: goredis.Must(rdb, nil), Invalidator: bus})
	defer c.Close()
	_ = c.Delete(ctx, "session:abc") // every other instance drops it too
}
