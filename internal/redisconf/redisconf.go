// Package redisconf checks the Redis settings that the cache's backend and
// the primitives beside it (idempotency, onetime, ratelimit, session,
// notify) depend on: that the client bounds its calls by context deadlines,
// that the server cannot evict their records, and that a namespace can be
// used in a key without choosing its Cluster slot.
package redisconf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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

// BadNamespace reports why ns cannot prefix keys (it holds a control
// character, '{' or '}': a brace would let the namespace, not the caller's
// hash tag, choose the Cluster slot), or "" if it can.
func BadNamespace(ns string) string {
	if strings.ContainsAny(ns, "{}") || strings.ContainsFunc(ns, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Sprintf("namespace %q contains a control character, '{' or '}'", ns)
	}
	return ""
}

// Startup is what a primitive's New checks before it uses client: that
// client bounds its calls by context deadlines and, unless allowEvicting,
// that Redis cannot evict keys (within max(timeout, [StartupTimeout])).
// The errors wrap the caller's own sentinels: invalid for the client,
// evicting (with why, which says what an eviction would break) for the
// policy, and unavailable when Redis could not be asked.
func Startup(ctx context.Context, client redis.UniversalClient, allowEvicting bool, timeout time.Duration, invalid, evicting, unavailable error, why string) error {
	if !ContextTimeouts(client) {
		return fmt.Errorf("%w: the client ignores context deadlines: set ContextTimeoutEnabled in its options, or a stopped Redis holds requests for its ReadTimeout", invalid)
	}
	if allowEvicting {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, max(timeout, StartupTimeout))
	defer cancel()
	switch err := CheckEviction(cctx, client); {
	case errors.Is(err, ErrEvictingPolicy), errors.Is(err, ErrPolicyUnknown):
		return fmt.Errorf("%w (%s; set maxmemory-policy noeviction, or Options.AllowEvictingRedis if you know better): %w", evicting, why, err)
	case err != nil:
		return fmt.Errorf("%w: checking maxmemory-policy: %w", unavailable, err)
	}
	return nil
}

// StartupTimeout is the least time [Startup] gives the eviction check: a
// start-up check waits longer than a request.
const StartupTimeout = 5 * time.Second

// CheckEviction returns nil if every master behind client has
// maxmemory-policy noeviction. Otherwise it returns an error wrapping
// [ErrEvictingPolicy] (naming the policy and the node) or [ErrPolicyUnknown]
// (with the reason), or the connection error.
func CheckEviction(ctx context.Context, client redis.UniversalClient) error {
	switch c := client.(type) {
	case *redis.ClusterClient:
		return checkEach(ctx, c.ForEachMaster)
	case *redis.Ring:
		return checkEach(ctx, c.ForEachShard)
	}
	return checkNode(ctx, client, "")
}

// checkEach checks every node forEach visits (a ClusterClient's masters,
// a Ring's shards) and joins their errors with forEach's own.
func checkEach(ctx context.Context, forEach func(context.Context, func(context.Context, *redis.Client) error) error) error {
	var mu sync.Mutex
	var errs []error
	err := forEach(ctx, func(ctx context.Context, n *redis.Client) error {
		if err := checkNode(ctx, n, n.Options().Addr); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
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
