package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/breaker"
)

// Limiter decides, per policy and actor, whether a call fits its quotas.
// Create it with [New]. It is safe for concurrent use and starts no
// goroutines, so it needs no Close; the Redis client stays the caller's.
type Limiter struct {
	o        Options
	policies map[string]*policy
	list     []*policy
	hash     *hasher
	br       *breaker.Breaker
	denials  *denials // nil with Options.NoDenialCache
	locals   *locals
	base     time.Time // the zero of now()
	idPrefix string    // unique to this Limiter: sliding-log members
	seq      atomic.Uint64
	noObs    bool

	st stats
}

// New returns a Limiter for the policies in o.
func New(o *Options) (*Limiter, error) {
	c, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Limiter{o: c, policies: make(map[string]*policy, len(c.Policies)), hash: newHasher(c.ActorSecret)}
	for i, p := range c.Policies {
		cp, err := compile(p, i)
		if err != nil {
			return nil, err
		}
		l.list = append(l.list, cp)
	}
	if err := resolve(l.list); err != nil {
		return nil, err
	}
	for _, p := range l.list {
		l.policies[p.Name] = p
	}
	l.base = c.Clock.Now()
	l.br = breaker.New(breaker.Options{Failures: c.BreakerFailures, Cooldown: c.BreakerCooldown, Now: l.now})
	if !c.NoDenialCache {
		l.denials = newDenials(c.DenialCacheSize)
	}
	l.locals = newLocals(c.LocalActors, l.list)
	var id [6]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+).
	l.idPrefix = base64.RawURLEncoding.EncodeToString(id[:]) + "."
	_, l.noObs = c.Observer.(NoopObserver)
	return l, nil
}

// Must is like [New] but panics on an error.
func Must(o *Options) *Limiter {
	l, err := New(o)
	if err != nil {
		panic(err)
	}
	return l
}

// now is the Limiter's monotonic clock, in nanoseconds since New.
func (l *Limiter) now() int64 { return int64(l.o.Clock.Now().Sub(l.base)) }

// Allow asks for one unit of policy for actor. It is AllowN with n = 1.
func (l *Limiter) Allow(ctx context.Context, policy, actor string) (Decision, error) {
	return l.AllowN(ctx, policy, actor, 1)
}

// AllowN asks for n units of policy (and of the policies it includes) for
// actor, and consumes them from every window if and only if every window
// has room.
//
// A Redis failure is never returned: while Redis cannot be reached the
// policy's OutageMode decides (see [Decision.Source]), and the fallback is
// counted ([Limiter.Stats]) and reported to the Observer. The errors are
// [ErrUnknownPolicy], [ErrInvalidActor], [ErrInvalidCost], and the
// caller's own context error when ctx ends before Redis answers.
//
// The actor is any string naming who is limited ("admin:42", an IP); it
// never leaves the process as given: Redis keys and telemetry carry its
// keyed hash. One over 256 bytes is kept in process as its keyed hash too
// (so a forged header cannot fill memory).
func (l *Limiter) AllowN(ctx context.Context, policy, actor string, n int) (Decision, error) {
	p := l.policies[policy]
	switch {
	case p == nil:
		return Decision{}, fmt.Errorf("%w: %q", ErrUnknownPolicy, policy)
	case actor == "":
		return Decision{}, ErrInvalidActor
	case n < 1 || n > p.callMaxCost:
		return Decision{}, fmt.Errorf("%w: %d units of policy %q (it admits 1 to %d at once)", ErrInvalidCost, n, p.Name, p.callMaxCost)
	}
	actor = l.boundActor(actor)
	now := l.now()
	if l.denials != nil && p.cacheable {
		for _, q := range p.all {
			if e, ok := l.denials.get(actorKey{q.index, actor}, n, now); ok {
				d := cachedDecision(p, q, e, n, now)
				l.st.cacheDenied.Add(1)
				if !l.noObs {
					l.observe(ctx, Event{Policy: p.Name, Actor: l.hash.hash(actor)}, d)
				}
				return d, nil
			}
		}
	}
	if l.o.Client == nil {
		return l.outage(ctx, p, actor, n, ReasonNoRedis, nil, 0), nil
	}
	if err := ctx.Err(); err != nil {
		// The caller has given up already: no call, and nothing said about
		// Redis.
		return Decision{}, fmt.Errorf("ratelimit: %s: %w", p.Name, context.Cause(ctx))
	}
	if !l.br.Allow() {
		return l.outage(ctx, p, actor, n, ReasonBreakerOpen, nil, 0), nil
	}
	sum := l.hash.sum(actor)

	t0 := l.now()
	wall := time.Now() // Redis's latency, whatever Clock says
	cctx, cancel := l.callContext(ctx)
	r, err := l.eval(cctx, p, sum, n)
	dur := time.Duration(l.now() - t0)
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			// The caller gave up: neither Redis's failure nor a decision.
			// If the breaker is half-open, this call may have been its
			// probe: the next call probes at once.
			l.br.Unused()
			return Decision{}, fmt.Errorf("ratelimit: %s: %w", p.Name, ctx.Err())
		case breaker.CallerLeft(ctx, time.Since(wall), l.o.Timeout):
			// The caller's deadline (shorter than Timeout: the call's
			// timeout, see callContext) ended too soon to say anything
			// about Redis (before half of Timeout): the caller gets the
			// outage decision, and the breaker hears nothing (a client's
			// short budgets must not open it for everyone).
			l.br.Unused()
			return l.outage(ctx, p, actor, n, ReasonRedisTimeout, err, dur), nil
		}
		// Redis did not answer in time (the caller's deadline counts once
		// it gave Redis half of Timeout: a Redis that never answers within
		// the callers' budgets must open the breaker and bring the outage
		// mode, not fail every call at its deadline), or failed.
		l.br.Failure()
		reason := ReasonRedisError
		if isTimeout(err) {
			reason = ReasonRedisTimeout
			l.st.redisTimeouts.Add(1)
		} else {
			l.st.redisErrors.Add(1)
		}
		return l.outage(ctx, p, actor, n, reason, err, dur), nil
	}
	l.br.Success()

	d := l.redisDecision(p, n, r)
	if d.Allowed {
		l.st.redisAllowed.Add(1)
		for _, q := range p.all {
			if q.Outage == Local && !l.locals.record(q, actor, n, t0) {
				l.st.localUntracked.Add(1)
			}
		}
	} else {
		l.st.redisDenied.Add(1)
		if l.denials != nil && p.cacheable {
			l.cacheDenials(p, actor, n, t0, d.Windows)
		}
	}
	if !l.noObs {
		l.observe(ctx, Event{Policy: p.Name, Actor: sum.String(), Duration: dur}, d)
	}
	return d, nil
}

// maxActorBytes bounds an actor as the process keeps it (in the denial
// cache and the local limiter, up to their entry limits): a longer one
// (a header an attacker fills, say) is kept as its keyed hash, which an
// actor given as is cannot equal (it starts with a NUL byte).
const maxActorBytes = 256

// boundActor returns actor, or its keyed hash if it is over maxActorBytes.
func (l *Limiter) boundActor(actor string) string {
	if len(actor) <= maxActorBytes {
		return actor
	}
	return "\x00" + l.hash.hash(actor)
}

// observe reports d to the Observer. It takes d by value, so that only a
// decision that is observed has to live on the heap.
//
//go:noinline
func (l *Limiter) observe(ctx context.Context, e Event, d Decision) {
	e.Decision = &d
	l.o.Observer.Decided(ctx, e)
}

// callContext bounds a Redis call by Options.Timeout, unless ctx already
// ends sooner (then ctx is used as is, sparing a context per call).
func (l *Limiter) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= l.o.Timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.o.Timeout)
}

// isTimeout reports whether err is a timeout (ours or the network's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// redisDecision builds the Decision of a script reply (see eval).
func (l *Limiter) redisDecision(p *policy, n int, r []int64) Decision {
	d := Decision{
		Policy:  p.Name,
		Cost:    n,
		Source:  SourceRedis,
		Windows: make([]Window, 0, p.nwin),
		Time:    time.UnixMicro(r[0]),
	}
	if p.single {
		d.Allowed, r = r[3] == 0, r[1:]
	} else {
		d.Allowed, r = r[1] == 1, r[2:]
	}
	j := 0
	for _, q := range p.all {
		for i, lim := range q.Limits {
			d.Windows = append(d.Windows, Window{
				Policy:     q.Name,
				Name:       q.names[i],
				Limit:      lim.N,
				Per:        lim.Per,
				Remaining:  int(max(0, r[j])),
				Reset:      time.Duration(max(0, r[j+1])) * time.Microsecond,
				RetryAfter: time.Duration(max(0, r[j+2])) * time.Microsecond,
			})
			j += 3
		}
	}
	summarize(&d)
	return d
}

// summarize fills the Decision's summary fields from its windows: the
// window with the least room, and the one that denied for longest.
func summarize(d *Decision) {
	d.Remaining, d.Limit, d.Reset, d.RetryAfter, d.DeniedBy = -1, 0, 0, 0, ""
	for i, w := range d.Windows {
		if i == 0 || w.Remaining < d.Remaining || w.Remaining == d.Remaining && w.Reset > d.Reset {
			d.Remaining, d.Limit, d.Reset = w.Remaining, w.Limit, w.Reset
		}
		if !d.Allowed && w.RetryAfter > 0 && (d.DeniedBy == "" || w.RetryAfter > d.RetryAfter) {
			d.RetryAfter, d.DeniedBy = w.RetryAfter, w.Name
		}
	}
}

// cacheDenials remembers, for each policy of the call that denied it, until
// when no call of cost n can fit it. until is counted from t0, taken before
// the call was sent and so before Redis decided: the cached denial ends no
// later than the real one.
func (l *Limiter) cacheDenials(p *policy, actor string, n int, t0 int64, ws []Window) {
	j := 0
	for _, q := range p.all {
		best := -1
		for i := range q.Limits {
			if w := ws[j+i]; w.RetryAfter > 0 && (best < 0 || w.RetryAfter > ws[j+best].RetryAfter) {
				best = i
			}
		}
		if best >= 0 {
			l.denials.put(actorKey{q.index, actor}, denial{until: t0 + int64(ws[j+best].RetryAfter), cost: n, window: best}, l.now())
		}
		j += len(q.Limits)
	}
}

// cachedDecision is the Decision for a call the denial cache answers. It
// has no Windows (so it allocates nothing): its summary describes the
// window that denied.
func cachedDecision(p, q *policy, e denial, n int, now int64) Decision {
	retry := time.Duration(e.until - now)
	return Decision{
		Policy:   p.Name,
		Cost:     n,
		Source:   SourceDenialCache,
		Limit:    q.Limits[e.window].N,
		DeniedBy: q.names[e.window],
		// Known only to be short of n: reported as none.
		Remaining:  0,
		Reset:      retry,
		RetryAfter: retry,
	}
}

// outage decides a call without Redis, by the strictest outage mode of the
// policies it touches (FailClosed over Local over FailOpen), and counts and
// reports it as a fallback.
func (l *Limiter) outage(ctx context.Context, p *policy, actor string, n int, reason string, err error, dur time.Duration) Decision {
	d := Decision{Policy: p.Name, Cost: n, Remaining: -1}
	switch p.outage {
	case FailClosed:
		d.Source = SourceFailClosed
		d.RetryAfter = l.o.BreakerCooldown
		l.st.failClosed.Add(1)
	case FailOpen:
		d.Source, d.Allowed = SourceFailOpen, true
		l.st.failOpen.Add(1)
	default:
		d.Source = SourceLocal
		now := l.now()
		ok := true
		for _, q := range p.all {
			if q.Outage != Local {
				continue // FailOpen: nothing to check
			}
			res := l.locals.check(q, actor, n, now)
			if res.full {
				reason = ReasonLocalFull
			}
			ok = ok && res.ok
			d.Windows = append(d.Windows, res.windows...)
		}
		d.Allowed = ok
		if ok {
			for _, q := range p.all {
				if q.Outage == Local && !l.locals.record(q, actor, n, now) {
					l.st.localUntracked.Add(1)
				}
			}
			l.st.localAllowed.Add(1)
		} else {
			l.st.localDenied.Add(1)
		}
		summarize(&d)
	}
	switch reason {
	case ReasonBreakerOpen:
		l.st.breakerSkips.Add(1)
	case ReasonLocalFull:
		l.st.localFull.Add(1)
	}
	if !l.noObs {
		l.observe(ctx, Event{Policy: p.Name, Actor: l.hash.hash(actor), Reason: reason, Err: err, Duration: dur}, d)
	}
	return d
}

// Quotas returns the windows of policy and of the policies it includes, in
// the order of Decision.Windows, with Remaining at each window's full
// quota: what the RateLimit-Policy HTTP field describes.
func (l *Limiter) Quotas(policy string) ([]Window, error) {
	p := l.policies[policy]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPolicy, policy)
	}
	var ws []Window
	for _, q := range p.all {
		for i, lim := range q.Limits {
			ws = append(ws, Window{Policy: q.Name, Name: q.names[i], Limit: lim.N, Per: lim.Per, Remaining: lim.N, Reset: lim.Per})
		}
	}
	return ws, nil
}

// Outage returns the outage mode a call of policy falls back to: the
// strictest of the policy's and those it includes (FailClosed over Local
// over FailOpen).
func (l *Limiter) Outage(policy string) (OutageMode, error) {
	p := l.policies[policy]
	if p == nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownPolicy, policy)
	}
	return p.outage, nil
}

// Reset forgets actor's use of policy (not of the policies it includes):
// its Redis key, and this instance's cached denials and local log. It is
// for administrators and tests.
//
// NOTE: other instances keep their cached denials of actor until those run
// out (at most the policy's longest window).
func (l *Limiter) Reset(ctx context.Context, policy, actor string) error {
	p := l.policies[policy]
	if p == nil {
		return fmt.Errorf("%w: %q", ErrUnknownPolicy, policy)
	}
	if actor == "" {
		return ErrInvalidActor
	}
	actor = l.boundActor(actor)
	l.forget(p, actor)
	if l.o.Client == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	if err := l.o.Client.Del(cctx, key(l.o.Namespace, l.hash.sum(actor), p.Name)).Err(); err != nil {
		return fmt.Errorf("ratelimit: reset %s: %w", p.Name, err)
	}
	return nil
}

// forget drops this instance's in-memory state of actor for p.
func (l *Limiter) forget(p *policy, actor string) {
	if l.denials != nil {
		l.denials.forget(actor, []*policy{p})
	}
	l.locals.forget(actor, []*policy{p})
}
