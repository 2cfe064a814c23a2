package tiertest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/tier"
	"github.com/tiercache/tiercache/tiertest"
)

// A fake clock steps a cache past its TTL without sleeping. (Tests that
// also need Redis start it with tiertest.Redis(t); see the package
// documentation.)
func Example() {
	ctx := context.Background()
	clock := tiertest.NewClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	cache := tier.Must(&tier.Options[string]{Namespace: "example", TTL: time.Minute, Clock: clock})
	defer cache.Close()

	loads := 0
	load := func(context.Context, string) (string, error) {
		loads++
		return fmt.Sprintf("hello #%d", loads), nil
	}
	v, _ := cache.GetOrLoad(ctx, "greeting", load)
	fmt.Println(clock.Now().Format(time.Kitchen), v)

	clock.Advance(30 * time.Second)
	v, _ = cache.GetOrLoad(ctx, "greeting", load)
	fmt.Println(clock.Now().Format(time.Kitchen), v, "(cached)")

	clock.Advance(time.Minute)
	v, _ = cache.GetOrLoad(ctx, "greeting", load)
	fmt.Println(clock.Now().Format(time.Kitchen), v, "(past the TTL: loaded again)")
	// Output:
	// 9:00AM hello #1
	// 9:00AM hello #1 (cached)
	// 9:01AM hello #2 (past the TTL: loaded again)
}
