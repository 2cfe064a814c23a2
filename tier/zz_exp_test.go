package tier_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

func TestZZExp(t *testing.T) {
	for _, cte := range []bool{false, true} {
		t.Run(fmt.Sprint(cte), func(t *testing.T) {
			srv := redistest.Start(t)
			p := faultproxy.New(t, srv.Addr())
			o := srv.Options()
			o.Addr = p.Addr()
			o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
			o.ContextTimeoutEnabled = cte
			rdb := redis.NewClient(o)
			defer rdb.Close()
			c := newCache(t, &tier.Options[string]{Namespace: "x", L2: goredis.Must(rdb, nil), BreakerCooldown: time.Second})
			load := func(_ context.Context, k string) (string, error) { return k, nil }
			_, _ = c.GetOrLoad(t.Context(), "warm", load)
			p.SetLatency(500 * time.Millisecond)
			for i := range 12 {
				t0 := time.Now()
				_, err := c.GetOrLoad(t.Context(), fmt.Sprint("k", i), load)
				t.Logf("%d %v %v %+v", i, time.Since(t0), err, c.Stats().Breaker)
			}
			t.Logf("%+v", c.Stats())
		})
	}
}
