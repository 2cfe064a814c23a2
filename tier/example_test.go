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

type Profile struct {
	ID   int64  `msgpack:"id"`
	Name string `msgpack:"name"`
}

// ExampleCache_GetOrLoad reads through an L1-only cache: the first call
// loads, the next ones are L1 hits, and a "not found" is cached too.
func ExampleCache_GetOrLoad() {
	c := tier.Must(&tier.Options[*Profile]{Name: "profiles"})
	defer c.Close()
	ctx := context.Background()
	queries := 0
	load := func(_ context.Context, key string) (*Profile, error) {
		queries++
		if key == "user:404" {
			return nil, tier.ErrNotFound
		}
		return &Profile{ID: 42, Name: "Ada"}, nil
	}
	for range 3 {
		p, err := c.GetOrLoad(ctx, "user:42", load)
		fmt.Println(p.Name, err)
	}
	_, err := c.GetOrLoad(ctx, "user:404", load)
	fmt.Println(errors.Is(err, tier.ErrNotFound))
	_, err = c.GetOrLoad(ctx, "user:404", load)
	fmt.Println(errors.Is(err, tier.ErrNotFound), "queries:", queries)
	// Output:
	// Ada <nil>
	// Ada <nil>
	// Ada <nil>
	// true
	// true queries: 2
}

// ExampleCache_Delete shows the write path: change the origin, then Delete;
// the next read loads the new value.
func ExampleCache_Delete() {
	c := tier.Must(&tier.Options[string]{})
	defer c.Close()
	ctx := context.Background()
	db := map[string]string{"greeting": "hello"}
	load := func(_ context.Context, key string) (string, error) { return db[key], nil }

	v, _ := c.GetOrLoad(ctx, "greeting", load)
	fmt.Println(v)
	db["greeting"] = "bonjour"
	_ = c.Delete(ctx, "greeting")
	v, _ = c.GetOrLoad(ctx, "greeting", load)
	fmt.Println(v)
	// Output:
	// hello
	// bonjour
}

// ExampleCache_GetOrLoadTagged caches a list that depends on an entity;
// InvalidateTags drops every list that names it.
func ExampleCache_GetOrLoadTagged() {
	c := tier.Must(&tier.Options[[]string]{})
	defer c.Close()
	ctx := context.Background()
	slots := []string{"09:00"}
	load := func(context.Context, string) ([]string, error) { return slots, nil }

	day, _ := c.GetOrLoadTagged(ctx, "expert:7:day:2026-11-26", []string{"expert:7"}, load)
	fmt.Println(day)
	slots = []string{"09:00", "10:00"}
	_ = c.InvalidateTags(ctx, "expert:7")
	day, _ = c.GetOrLoadTagged(ctx, "expert:7:day:2026-11-26", []string{"expert:7"}, load)
	fmt.Println(day)
	// Output:
	// [09:00]
	// [09:00 10:00]
}

// ExampleNew wires the whole thing: ristretto L1, Redis L2, and the
// invalidation bus that keeps the other instances' L1 honest. It needs a
// Redis, so it has no output block.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()

	bus := invalidate.Must(rdb, nil)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = bus.Run(ctx) }() // the caller owns the bus's goroutines

	profiles, err := tier.New(&tier.Options[*Profile]{
		Namespace:   "profiles",
		L2:          goredis.Must(rdb, nil),
		Invalidator: bus,
		TTL:         10 * time.Minute,
		L1TTL:       time.Minute,
		FailSafe:    time.Hour, // serve the last value when the database fails
		SoftTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		panic(err)
	}
	defer profiles.Close()
	p, err := profiles.GetOrLoad(ctx, "user:42", func(ctx context.Context, key string) (*Profile, error) {
		return &Profile{ID: 42, Name: "Ada"}, nil // a database query
	})
	fmt.Println(p, err)
}
