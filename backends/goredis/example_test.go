package goredis_test

import (
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/tier"
)

// ExampleNew puts a cache's L2 on a Redis Cluster client the application
// already has (TLS, ACL users and Sentinel come from the client the same
// way). It needs a Redis, so it has no output block.
func ExampleNew() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{"127.0.0.1:7000"},
		ContextTimeoutEnabled: true, // required: the cache bounds every call itself
	})
	defer rdb.Close()
	l2, err := goredis.New(rdb, &goredis.Options{MaxValueBytes: 1 << 20})
	if err != nil {
		panic(err)
	}
	c := tier.Must(&tier.Options[[]byte]{Namespace: "blobs", L2: l2}) // MaxValueBytes: the backend's
	defer c.Close()
}
