// Package rediskeys deletes the keys a demo or a test wrote, by pattern.
package rediskeys

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// DeleteMatching deletes the keys matching pattern (SCAN MATCH on every
// master of a Cluster; never FLUSHALL) and returns the first error.
func DeleteMatching(ctx context.Context, c redis.UniversalClient, pattern string) error {
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
	}
	return del(ctx, c)
}
