package tier_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/tier"
)

// ExampleCache_DeleteAndWait: after the database write, drop the key on
// every instance before answering, so that the client's next request reads
// the new row whichever instance serves it. It needs a Redis, so it has no
// output block.
func ExampleCache_DeleteAndWait() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	bus := invalidate.Must(rdb, nil)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = bus.Run(ctx) }()

	profiles := tier.Must(&tier.Options[*Profile]{Namespace: "profiles", L2: goredis.Must(rdb, nil), Invalidator: bus})
	defer profiles.Close()

	// ... UPDATE profiles SET name = 'Ada L.' WHERE id = 42 ...
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := profiles.DeleteAndWait(wctx, "user:42")
	var na *invalidate.NotAcknowledgedError
	switch {
	case errors.As(err, &na):
		// Deleted, but these instances did not confirm in time: they drop
		// it when the message reaches them.
		fmt.Println("not confirmed by", na.Missing)
	case err != nil:
		fmt.Println("delete failed:", err)
	}
}
