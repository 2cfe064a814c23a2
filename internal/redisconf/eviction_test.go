package redisconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestCheckEviction_Ring checks that every shard of a Ring is checked and
// that the evicting one is named.
func TestCheckEviction_Ring(t *testing.T) {
	t.Parallel()
	safe := redistest.Start(t)
	lru := redistest.Start(t, "--maxmemory-policy", "allkeys-lru")
	ring := redis.NewRing(&redis.RingOptions{
		Addrs:                 map[string]string{"a": safe.Addr(), "b": lru.Addr()},
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = ring.Close() })
	err := CheckEviction(t.Context(), ring)
	if !errors.Is(err, ErrEvictingPolicy) {
		t.Fatalf("CheckEviction = %v, want ErrEvictingPolicy", err)
	}
	if msg := err.Error(); !strings.Contains(msg, lru.Addr()) || strings.Contains(msg, safe.Addr()) {
		t.Fatalf("CheckEviction = %q, want %s named and %s not", msg, lru.Addr(), safe.Addr())
	}
	if err := CheckEviction(t.Context(), safe.Client(t)); err != nil {
		t.Fatalf("CheckEviction(noeviction server) = %v", err)
	}
}
