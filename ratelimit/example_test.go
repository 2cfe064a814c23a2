package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/ratelimit"
)

// A Limiter without Redis answers by each policy's outage mode: here a
// local limiter that allows the whole quota on this instance.
func ExampleLimiter_Allow() {
	l := ratelimit.Must(&ratelimit.Options{
		// Client: rdb, a go-redis client, in a real application.
		ActorSecret: []byte("the same secret on every instance"),
		Policies: []ratelimit.Policy{{
			Name:      "role_changes",
			Algorithm: ratelimit.SlidingLog,
			Limits:    []ratelimit.Limit{ratelimit.Per(5, time.Hour)},
		}},
	})
	for range 6 {
		d, err := l.Allow(context.Background(), "role_changes", "admin:42")
		if err != nil {
			panic(err)
		}
		fmt.Println(d.Allowed, d.Remaining, d.Source)
	}
	// Output:
	// true 4 local
	// true 3 local
	// true 2 local
	// true 1 local
	// true 0 local
	// false 0 local
}
