// Command demo runs tiercache in front of a slow in-memory origin and prints
// what each tier answered. It uses Redis at REDIS_ADDR (default
// 127.0.0.1:6379) when it answers, and runs L1-only when it does not.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/tier"
)

type profile struct {
	ID   int    `msgpack:"id"`
	Name string `msgpack:"name"`
}

func main() {
	dur := flag.Duration("duration", 3*time.Second, "how long to drive reads")
	keys := flag.Int("keys", 10000, "distinct keys (Zipf-distributed reads)")
	flag.Parse()
	if err := run(*dur, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, nkeys int) error {
	ctx := context.Background()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	opts := &tier.Options[*profile]{Name: "demo", Namespace: fmt.Sprintf("demo-%d", os.Getpid()), TTL: time.Minute}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		fmt.Printf("Redis at %s is not reachable (%v): running L1-only.\n", addr, err)
	} else {
		fmt.Printf("Redis at %s: running L1 + L2.\n", addr)
		opts.L2 = goredis.Must(rdb, nil)
	}
	c, err := tier.New(opts)
	if err != nil {
		return err
	}
	defer c.Close()
	load := func(ctx context.Context, key string) (*profile, error) {
		time.Sleep(200 * time.Microsecond) // a database query
		return &profile{Name: key}, nil
	}
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(nkeys-1))
	end := time.Now().Add(dur)
	n := 0
	for time.Now().Before(end) {
		if _, err := c.GetOrLoad(ctx, fmt.Sprintf("user:%d", zipf.Uint64()), load); err != nil {
			return err
		}
		n++
	}
	s := c.Stats()
	fmt.Printf("requests %d  L1 hits %d  L2 hits %d  origin loads %d  fallbacks %d\n", n, s.L1Hits, s.L2Hits, s.Loads, s.Fallbacks)
	if opts.L2 != nil {
		var keys []string
		for k := range nkeys {
			keys = append(keys, c.Key(fmt.Sprintf("user:%d", k)))
		}
		for i := 0; i < len(keys); i += 1000 {
			rdb.Del(ctx, keys[i:min(i+1000, len(keys))]...)
		}
	}
	return nil
}
