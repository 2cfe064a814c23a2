// Package demo runs the session part of the booking application's demo:
// two instances, logins on both, requests reading their sessions, and a
// "log out everywhere" on one instance, timed until the other refuses.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/rediskeys"
	"github.com/tiercache/tiercache/invalidate"
	"github.com/tiercache/tiercache/session"
	"github.com/tiercache/tiercache/tier"
)

// Config configures [Run].
type Config struct {
	// NewClient returns a new client of the Redis the instances share
	// (with ContextTimeoutEnabled); Run closes the clients it asked for.
	// Each instance gets two: one for its sessions, one for its bus.
	// Required.
	NewClient func() redis.UniversalClient
	// Namespace prefixes the demo's keys. Default: "demo-sess-" and a
	// random suffix; Run deletes its keys at the end.
	Namespace string
	// Users is how many users log in, each on both instances. Default: 50.
	Users int
	// Requests is how many requests read a session, spread over the two
	// instances. Default: 20,000.
	Requests int
	// Timeout bounds each Redis call of the instances' Managers. Default:
	// session's (DefaultTimeout).
	Timeout time.Duration
}

// Report is what [Run] measured.
type Report struct {
	Users, Sessions, Requests int
	// ReadP50 and ReadP99 are the latencies of a request's session read.
	ReadP50, ReadP99 time.Duration
	// RoundTripsPerRequest counts the Redis commands the two instances'
	// session clients sent during the requests, per request (loads of
	// sessions not yet in L1, and activity records).
	RoundTripsPerRequest float64
	// Revoked is how many sessions RevokeAll ended on instance A;
	// RevokeCall how long the call took; RefusedOnB how long after it
	// returned instance B refused the last of them (the bus's delay).
	Revoked    int
	RevokeCall time.Duration
	RefusedOnB time.Duration
	// Fallbacks is the two instances' answers given without Redis.
	Fallbacks uint64
}

// Run runs the demo.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.NewClient == nil {
		return nil, errors.New("demo: no NewClient")
	}
	if cfg.Users <= 0 {
		cfg.Users = 50
	}
	if cfg.Requests <= 0 {
		cfg.Requests = 20000
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "demo-sess-" + strings.ToLower(rand.Text()[:8])
	}
	secret := []byte(rand.Text()) // one secret for both instances
	var clients []redis.UniversalClient
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	newClient := func() redis.UniversalClient {
		c := cfg.NewClient()
		clients = append(clients, c)
		return c
	}
	runCtx, stop := context.WithCancel(ctx)
	var runs []chan error
	defer func() {
		stop()
		for _, r := range runs {
			<-r
		}
	}()
	var calls atomic.Int64
	var inst [2]*session.Manager
	for i := range inst {
		data := newClient()
		data.AddHook(counter{&calls})
		bus, err := invalidate.New(newClient(), &invalidate.Options{Heartbeat: 200 * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		sub := &subscribed{ch: make(chan struct{}, 1)}
		m, err := session.New(&session.Options{Client: data, Invalidator: bus, Secret: secret, Namespace: cfg.Namespace, CacheObserver: sub,
			Timeout: cfg.Timeout})
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		defer m.Close()
		inst[i] = m
		done := make(chan error, 1)
		runs = append(runs, done)
		go func() { done <- bus.Run(runCtx) }()
		select {
		case <-sub.ch:
		case <-time.After(10 * time.Second):
			return nil, errors.New("demo: the bus did not subscribe within 10 s")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	defer cleanup(context.WithoutCancel(ctx), clients[0], cfg.Namespace)

	rep := &Report{Users: cfg.Users, Requests: cfg.Requests}
	type login struct {
		user, token string
	}
	var logins []login
	for u := range cfg.Users {
		user := fmt.Sprintf("user:%d", u)
		for i, m := range inst {
			tok, err := m.Create(ctx, user, session.Client{Device: fmt.Sprintf("browser-%d", i)}, map[string]string{"role": "client", "lang": "fr"})
			if err != nil {
				return nil, fmt.Errorf("demo: login: %w", err)
			}
			logins = append(logins, login{user, tok})
		}
	}
	rep.Sessions = len(logins)

	lat := make([]time.Duration, 0, cfg.Requests)
	calls.Store(0)
	for i := range cfg.Requests {
		l := logins[(i*7919)%len(logins)]
		t0 := time.Now()
		if _, err := inst[i%2].Get(ctx, l.token); err != nil {
			return nil, fmt.Errorf("demo: request: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	rep.RoundTripsPerRequest = float64(calls.Load()) / float64(cfg.Requests)
	slices.Sort(lat)
	rep.ReadP50, rep.ReadP99 = lat[len(lat)/2], lat[len(lat)*99/100]

	// user:0 logs out everywhere, on A; B holds both of its sessions.
	var victims []string
	for _, l := range logins {
		if l.user == "user:0" {
			victims = append(victims, l.token)
			if _, err := inst[1].Get(ctx, l.token); err != nil {
				return nil, fmt.Errorf("demo: %w", err)
			}
		}
	}
	t0 := time.Now()
	n, err := inst[0].RevokeAll(ctx, "user:0")
	if err != nil {
		return nil, fmt.Errorf("demo: revoke all: %w", err)
	}
	t1 := time.Now()
	rep.Revoked, rep.RevokeCall = n, t1.Sub(t0)
	for _, tok := range victims {
		for {
			if _, err := inst[1].Get(ctx, tok); errors.Is(err, session.ErrNotFound) {
				break
			}
			if time.Since(t1) > 30*time.Second {
				return nil, errors.New("demo: B still serves a revoked session after 30 s")
			}
			time.Sleep(50 * time.Microsecond) // the next request
		}
	}
	rep.RefusedOnB = time.Since(t1)
	for _, m := range inst {
		rep.Fallbacks += m.Stats().Fallbacks()
	}
	return rep, nil
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "sessions (2 instances)\tusers\tsessions\trequests\tread p50\tread p99\tRedis calls/request\trevoke-all\trefused on B after\tfallbacks\n")
	fmt.Fprintf(tw, "\t%d\t%d\t%d\t%v\t%v\t%.4f\t%d in %v\t%v\t%d\n", r.Users, r.Sessions, r.Requests,
		r.ReadP50.Round(10*time.Nanosecond), r.ReadP99.Round(10*time.Nanosecond), r.RoundTripsPerRequest,
		r.Revoked, r.RevokeCall.Round(time.Microsecond), r.RefusedOnB.Round(time.Microsecond), r.Fallbacks)
	return tw.Flush()
}

// counter counts the commands a client sends (a pipeline's each).
type counter struct{ n *atomic.Int64 }

func (c counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// subscribed signals when the bus confirmed the cache's subscription.
type subscribed struct {
	tier.NoopObserver
	ch chan struct{}
}

func (s *subscribed) Event(_ context.Context, e tier.Event) {
	if e.Kind == tier.EventL1Dropped && e.Reason == "subscribed" {
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
}

// cleanup deletes the demo's keys (SCAN on its own namespace; never
// FLUSHALL).
func cleanup(ctx context.Context, c redis.UniversalClient, ns string) {
	_ = rediskeys.DeleteMatching(ctx, c, ns+":*")
}
