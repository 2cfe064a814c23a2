// Package redisconf checks the Redis settings that the primitives beside the
// cache (idempotency, onetime) depend on: that the client bounds its calls by
// context deadlines, and that the server cannot evict their records.
package redisconf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// SafePolicy is the only maxmemory-policy under which Redis never deletes a
// key before its TTL: at the memory limit, writes fail instead.
const SafePolicy = "noeviction"

var (
	// ErrEvictingPolicy is returned by [CheckEviction] when a server may
	// evict keys.
	ErrEvictingPolicy = errors.New("redisconf: redis may evict keys")
	// ErrPolicyUnknown is returned by [CheckEviction] when the policy could
	// not be read (CONFIG GET refused, for example by an ACL or a managed
	// service).
	ErrPolicyUnknown = errors.New("redisconf: maxmemory-policy unknown")
)

// ContextTimeouts reports whether client bounds its I/O by context
// deadlines. A client type it does not know is trusted.
func ContextTimeouts(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// CheckEviction returns nil if every master behind client has
// maxmemory-policy noeviction. Otherwise it returns an error wrapping
// [ErrEvictingPolicy] (naming the policy and the node) or [ErrPolicyUnknown]
// (with the reason), or the connection error.
func CheckEviction(ctx context.Context, client redis.UniversalClient) error {
	switch c := client.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		var errs []error
		err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if err := checkNode(ctx, n, n.Options().Addr); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
		return errors.Join(append(errs, err)...)
	case *redis.Ring:
		var mu sync.Mutex
		var errs []error
		err := c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			if err := checkNode(ctx, n, n.Options().Addr); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
		return errors.Join(append(errs, err)...)
	}
	return checkNode(ctx, client, "")
}

func checkNode(ctx context.Context, c redis.Cmdable, addr string) error {
	where := ""
	if addr != "" {
		where = " on " + addr
	}
	m, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		var re redis.Error
		if errors.As(err, &re) {
			return fmt.Errorf("%w%s: CONFIG GET maxmemory-policy: %s", ErrPolicyUnknown, where, re.Error())
		}
		return fmt.Errorf("redisconf: CONFIG GET maxmemory-policy%s: %w", where, err)
	}
	p, ok := m["maxmemory-policy"]
	if !ok {
		return fmt.Errorf("%w%s: CONFIG GET maxmemory-policy answered nothing", ErrPolicyUnknown, where)
	}
	if !strings.EqualFold(p, SafePolicy) {
		return fmt.Errorf("%w%s: maxmemory-policy is %s, not %s", ErrEvictingPolicy, where, p, SafePolicy)
	}
	return nil
}
