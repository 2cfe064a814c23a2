package counters

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/tier"
)

// DefaultRefreshAhead is the Dashboard cache's RefreshAhead when its
// options leave it at 0.
const DefaultRefreshAhead = 0.5

// Dashboard answers dashboard figures (a counter's sum, a unique count,
// over the last window) through a tier cache with refresh-ahead: a figure
// read past half its TTL is refreshed in the background, so a dashboard
// read waits for the aggregate query only the first time a figure is
// asked for. It is safe for concurrent use.
type Dashboard struct {
	c     *Counters
	cache *tier.Cache[int64]
}

// NewDashboard returns a Dashboard over c whose cache is built from o (a
// nil o means all defaults; RefreshAhead 0 becomes DefaultRefreshAhead,
// TTL 0 becomes 10 seconds, an empty Namespace becomes c's namespace +
// ":dashboard"). The Dashboard owns the cache: Close closes
// it.
func NewDashboard(c *Counters, o *tier.Options[int64]) (*Dashboard, error) {
	var opts tier.Options[int64]
	if o != nil {
		opts = *o
	}
	if opts.Name == "" {
		opts.Name = "dashboard"
	}
	if opts.Namespace == "" {
		opts.Namespace = c.o.Namespace + ":dashboard"
	}
	if opts.RefreshAhead == 0 {
		opts.RefreshAhead = DefaultRefreshAhead
	}
	if opts.TTL == 0 {
		opts.TTL = 10 * time.Second
	}
	cache, err := tier.New(&opts)
	if err != nil {
		return nil, fmt.Errorf("counters: dashboard cache: %w", err)
	}
	return &Dashboard{c: c, cache: cache}, nil
}

// Sum returns counter name's total over the last window, cached.
func (d *Dashboard) Sum(ctx context.Context, name string, window time.Duration) (int64, error) {
	return d.cache.GetOrLoad(ctx, "sum:"+name+":"+strconv.FormatInt(window.Milliseconds(), 10),
		func(ctx context.Context, _ string) (int64, error) {
			now := d.c.o.Now()
			return d.c.Sum(ctx, name, now.Add(-window), now)
		})
}

// Unique returns unique count name's estimate over the last window,
// cached.
func (d *Dashboard) Unique(ctx context.Context, name string, window time.Duration) (int64, error) {
	return d.cache.GetOrLoad(ctx, "uniq:"+name+":"+strconv.FormatInt(window.Milliseconds(), 10),
		func(ctx context.Context, _ string) (int64, error) {
			now := d.c.o.Now()
			return d.c.Unique(ctx, name, now.Add(-window), now)
		})
}

// Close closes the cache. It is idempotent.
func (d *Dashboard) Close() error { return d.cache.Close() }
