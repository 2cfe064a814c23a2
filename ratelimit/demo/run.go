package demo

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/ratelimit"
)

// Config configures [Run].
type Config struct {
	// Client is the Redis the two instances share. Nil: no Redis, and the
	// burst shows each policy's outage mode.
	Client redis.UniversalClient
	// Namespace prefixes the demo's keys. Default: "demo-rl" and a random
	// suffix, so that runs do not see each other's counts.
	Namespace string
	// Burst is how many requests each of the two instances sends per
	// policy. Default: 40.
	Burst int
	// Observer receives every decision (for example
	// tierotel.NewRateLimitObserver()). Default: none.
	Observer ratelimit.Observer
}

// Row is one line of the demo's table: what a burst on one policy got.
type Row struct {
	Policy   string
	Quota    string // as in the RateLimit-Policy field
	Outage   ratelimit.OutageMode
	Requests int
	Allowed  int
	Denied   int
	// BySource counts the decisions by who took them.
	BySource map[ratelimit.Source]int
}

// Report is what [Run] did.
type Report struct {
	Redis bool
	Rows  []Row
}

// Run sends a burst of requests from one admin against "role changes" and
// from one user against "profile APIs", half through each of two Limiter
// instances, and reports the allowed and denied counts. With Redis the
// counts are the quotas (5 role changes, 30 profile requests); without it
// they are the outage modes: role changes fail closed (none allowed), the
// profile APIs use each instance's local share (15 each).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Burst <= 0 {
		cfg.Burst = 40
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "demo-rl-" + strings.ToLower(rand.Text()[:8])
	}
	secret := []byte(rand.Text()) // one secret shared by both instances
	var limiters [2]*ratelimit.Limiter
	for i := range limiters {
		l, err := ratelimit.New(&ratelimit.Options{
			Client: cfg.Client, Policies: Policies(2), ActorSecret: secret,
			Namespace: cfg.Namespace, Observer: cfg.Observer,
		})
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		limiters[i] = l
	}
	rep := &Report{Redis: cfg.Client != nil}
	for _, b := range []struct{ policy, actor string }{
		{PolicyRoleChanges, "admin:1"},
		{PolicyProfile, "user:1"},
	} {
		row := Row{Policy: b.policy, BySource: map[ratelimit.Source]int{}}
		ws, err := limiters[0].Quotas(b.policy)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		var q []string
		for _, w := range ws {
			q = append(q, fmt.Sprintf("%d/%s", w.Limit, short(w.Per)))
		}
		row.Quota = strings.Join(q, " + ")
		row.Outage, _ = limiters[0].Outage(b.policy)
		for i := range 2 * cfg.Burst {
			d, err := limiters[i%2].Allow(ctx, b.policy, b.actor)
			if err != nil {
				return rep, fmt.Errorf("demo: %w", err)
			}
			row.Requests++
			row.BySource[d.Source]++
			if d.Allowed {
				row.Allowed++
			} else {
				row.Denied++
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	where := "Redis"
	if !r.Redis {
		where = "no Redis: outage modes"
	}
	fmt.Fprintf(tw, "rate limits (%s)\tquota\toutage mode\trequests\tallowed\tdenied\tdecided by\n", where)
	for _, row := range r.Rows {
		var by []string
		for _, s := range []ratelimit.Source{ratelimit.SourceRedis, ratelimit.SourceDenialCache,
			ratelimit.SourceLocal, ratelimit.SourceFailClosed, ratelimit.SourceFailOpen} {
			if n := row.BySource[s]; n > 0 {
				by = append(by, fmt.Sprintf("%s %d", s, n))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", row.Policy, row.Quota, row.Outage, row.Requests, row.Allowed, row.Denied, strings.Join(by, ", "))
	}
	return tw.Flush()
}

// short formats d without zero units: 1h, 10m, 24h, 1m30s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
