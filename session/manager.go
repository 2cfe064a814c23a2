package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/coarsetime"
	"github.com/tiercache/tiercache/tier"
)

// Manager creates, reads, changes and ends sessions. Create it with [New]
// and Close it when done. It is safe for concurrent use.
type Manager struct {
	o     Options
	rdb   redis.UniversalClient
	cache *tier.Cache[*Session]
	h     *hasher
	k     keys
	br    *breaker.Breaker
	noObs bool

	idleUS, absUS, touchUS int64 // µs
	idleNS, touchNS        int64 // ns

	st        stats
	closed    atomic.Bool
	closeOnce sync.Once
}

// Client describes where a request comes from: recorded with a session,
// shown in its user's session list, and compared for the monitoring
// events. Both are optional.
type Client struct {
	// Device is a label for the device, such as its User-Agent.
	Device string
	// IP is the client's address.
	IP string
}

// New returns a Manager configured by o.
func New(o *Options) (*Manager, error) {
	c, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Manager{
		o: c, rdb: c.Client, h: newHasher(c.Secret), k: keys{ns: c.Namespace},
		idleUS: c.IdleTimeout.Microseconds(), absUS: c.AbsoluteTimeout.Microseconds(),
		idleNS: int64(c.IdleTimeout),
	}
	m.touchNS = int64(float64(c.IdleTimeout) * c.TouchFraction)
	m.touchUS = m.touchNS / 1000
	m.br = breaker.New(breaker.Options{Failures: c.BreakerFailures, Cooldown: c.BreakerCooldown})
	_, m.noObs = c.Observer.(NoopObserver)
	cache, err := tier.New(&tier.Options[*Session]{
		Name:        "session",
		Namespace:   c.Namespace,
		Invalidator: c.Invalidator,
		TTL:         c.L1TTL,
		NegativeTTL: c.NegativeTTL,
		L1MaxCost:   c.L1MaxCost,
		// L1 only: Redis is the origin, read by m.load.
		Codec: sizeCodec{},
		Cost: func(key string, s *Session, _ int) int64 {
			if s == nil {
				return int64(len(key) + 64) // a "not found"
			}
			return int64(s.size())
		},
		LoadTimeout: 2 * c.Timeout,
		// The cache's only Redis call is the PUBLISH of an invalidation:
		// Timeout bounds it too, as every Redis call (not tier's default).
		L2Timeout: c.Timeout,
		Observer:  c.CacheObserver,
	})
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	m.cache = cache
	coarsetime.Acquire() // released in Close
	return m, nil
}

// Must is like [New] but panics on an error.
func Must(o *Options) *Manager {
	m, err := New(o)
	if err != nil {
		panic(err)
	}
	return m
}

// Close releases the Manager's L1 and unregisters it from the bus. It is
// idempotent and returns nil; later calls return [ErrClosed]. The Redis
// client and the bus stay the caller's.
//
// WARNING: invalidations the L1 cache still keeps for replay (a publish
// failed: Cache().Stats().PendingInvalidations) are dropped, and the
// other instances may serve those sessions from L1 for up to L1TTL: after
// an outage, close a Manager only once that count is zero.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		_ = m.cache.Close()
		coarsetime.Release()
	})
	return nil
}

// Cache returns the L1 cache (for its Stats; do not write to it).
func (m *Manager) Cache() *tier.Cache[*Session] { return m.cache }

// Ref returns the ref of a token: what the user's session list, the
// Observer and telemetry call its session. It is part of the token, and
// "" for a string that is not a token.
func (m *Manager) Ref(token string) string {
	if !wellFormed(token) {
		return ""
	}
	_, ref, _ := splitKey(keyOf(token))
	return ref
}

// UserTag returns the keyed hash of a user that Redis keys, events and
// telemetry carry instead of the user.
func (m *Manager) UserTag(user string) string { return m.h.userTag(user) }

// auth returns the L1 key, tag, ref and keyed hash of a well-formed
// token, for a write: its script checks the hash against the session's.
func (m *Manager) auth(token string) (key, tag, ref, hash string, err error) {
	if !wellFormed(token) {
		return "", "", "", "", errMalformed
	}
	key = keyOf(token)
	tag, ref, _ = splitKey(key)
	return key, tag, ref, m.h.tokenHash(token), nil
}

// Get returns the live session of token: from L1 when this instance holds
// it (no round trip), else from Redis. It records the session's activity
// when TouchFraction of the idle window has passed since the last record
// (one round trip, on one request). It returns an error matching
// [ErrNotFound] (and [ErrExpired] or [ErrMalformed] when that is known)
// for a token with no live session, and one matching [ErrUnavailable]
// when Redis cannot be reached and L1 cannot answer.
//
// While Redis is unreachable a session in L1 is served (its activity not
// recorded, counted as Stats.TouchSkipped) until its idle or absolute
// deadline, Options.L1TTL after it was read, or, if the bus's subscription
// is down too, the bus's StaleBound after it was read, whichever comes
// first; then reads fail closed.
//
// NOTE: the *Session is shared: do not keep it past the request.
func (m *Manager) Get(ctx context.Context, token string) (*Session, error) {
	return m.get(ctx, token, "")
}

// GetFrom is [Manager.Get] for a request from ip: the first request of a
// session from an address other than the one recorded reports
// [EventNewIP], and the address is recorded with the next touch.
func (m *Manager) GetFrom(ctx context.Context, token, ip string) (*Session, error) {
	return m.get(ctx, token, ip)
}

func (m *Manager) get(ctx context.Context, token, ip string) (*Session, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if !shaped(token) {
		m.st.refused.Add(1)
		return nil, errMalformed
	}
	// No counter here: a shared atomic costs more than the rest of a hit
	// when cores contend for it (L1 hits are in the cache's own Stats).
	s, ok := m.cache.GetIfPresent(keyOf(token))
	if !ok {
		if !wellFormed(token) {
			m.st.refused.Add(1)
			return nil, errMalformed
		}
		var err error
		// A copy: L1 keeps its key, which must not hold on to the token.
		if s, err = m.cache.GetOrLoad(ctx, strings.Clone(keyOf(token)), m.load); err != nil {
			return nil, m.readError(ctx, err)
		}
	}
	if !s.verify(m.h, token) {
		// A made-up secret for a real ref: the same answer as a made-up
		// ref.
		m.st.refused.Add(1)
		return nil, ErrNotFound
	}
	now := coarsetime.Now()
	off := s.offset.Load()
	if now >= s.absolute*1000+off {
		m.st.refused.Add(1)
		return nil, errExpired
	}
	seen := s.seen.Load()*1000 + off
	idleAt := min(seen+m.idleNS, s.absolute*1000+off)
	if len(ip) > maxClientBytes {
		ip = "" // not an address: neither checked nor stored
	}
	if ip != "" {
		m.checkIP(ctx, s, ip)
	}
	switch {
	case now >= idleAt:
		// Idle here; another instance may have recorded activity since:
		// Redis decides.
		return m.touch(ctx, s, ip, true)
	case now >= seen+s.rtt.Load()+m.touchNS && s.touching.CompareAndSwap(false, true):
		defer s.touching.Store(false)
		return m.touch(ctx, s, ip, false)
	}
	return s, nil
}

// readError turns a failed L1 read (a load from Redis) into the caller's
// error.
func (m *Manager) readError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, tier.ErrNotFound):
		m.st.refused.Add(1)
		return ErrNotFound
	case errors.Is(err, tier.ErrClosed):
		return ErrClosed
	case errors.Is(err, ErrUnavailable):
		m.st.readsRefused.Add(1)
		m.fallback(ctx, "read", err, 0)
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("session: get: %w", ctx.Err())
	}
	m.st.readsRefused.Add(1)
	m.fallback(ctx, "read", err, 0)
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// load reads a session from Redis: the tier.LoadFunc of the L1 cache.
func (m *Manager) load(ctx context.Context, key string) (*Session, error) {
	tag, ref, ok := splitKey(key)
	if !ok {
		return nil, tier.ErrNotFound
	}
	var v []any
	t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		v, err = readScript.Run(ctx, m.rdb, []string{m.k.session(tag, ref), m.k.index(tag)}, ref).Slice()
		return err
	})
	if err != nil {
		return nil, err
	}
	now, err := replyInt(v, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrUnavailable, err)
	}
	if len(v) < 2 {
		return nil, tier.ErrNotFound
	}
	kv, _ := v[1].([]any)
	s, ok := parseSession(key, tag, ref, kv)
	if !ok || now >= s.absolute {
		return nil, tier.ErrNotFound
	}
	s.observe(s.seen.Load(), t0-now*1000, t1-t0)
	return s, nil
}

// touch records activity on s in Redis (if due there), and returns s, or
// the error of a session that is gone. force is set when s looks idle
// here: then a failure to ask Redis refuses the read.
func (m *Manager) touch(ctx context.Context, s *Session, ip string, force bool) (*Session, error) {
	m.st.touches.Add(1)
	var v []any
	t0, t1, err := m.call(ctx, func(ctx context.Context) (err error) {
		v, err = touchScript.Run(ctx, m.rdb, []string{m.k.session(s.tag, s.ref), m.k.index(s.tag)},
			s.ref, m.idleUS, m.touchUS, ip).Slice()
		return err
	})
	if err == nil && len(v) >= 3 {
		var now, seen, wrote int64
		if now, err = replyInt(v, 0); err == nil {
			if seen, err = replyInt(v, 1); err == nil {
				wrote, err = replyInt(v, 2)
			}
		}
		if err == nil {
			if wrote == 1 {
				m.st.touchWrites.Add(1)
			}
			s.observe(seen, t0-now*1000, t1-t0)
			return s, nil
		}
		err = fmt.Errorf("%w: touch: %w", ErrUnavailable, err)
	}
	if err == nil {
		// Gone in Redis (revoked, or timed out there): every instance
		// should forget it.
		m.st.refused.Add(1)
		_ = m.drop(ctx, s.key)
		if force {
			return nil, errExpired
		}
		return nil, ErrNotFound
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("session: touch: %w", ctx.Err())
	}
	if force {
		m.st.readsRefused.Add(1)
		m.fallback(ctx, "read", err, time.Duration(t1-t0))
		return nil, err
	}
	m.st.touchSkipped.Add(1)
	m.fallback(ctx, "touch", err, time.Duration(t1-t0))
	return s, nil
}

// checkIP reports the first request of s from an address other than the
// last one this instance knows.
func (m *Manager) checkIP(ctx context.Context, s *Session, ip string) {
	p := s.lastIP.Load()
	prev := s.ip
	if p != nil {
		prev = *p
	}
	if ip == prev {
		return
	}
	if !s.lastIP.CompareAndSwap(p, &ip) || prev == "" {
		return
	}
	m.st.newIPs.Add(1)
	if !m.noObs {
		m.o.Observer.Event(ctx, Event{Kind: EventNewIP, User: s.user, UserTag: s.tag, Ref: s.ref, Device: s.device, IP: ip, PrevIP: prev})
	}
}

// call runs one Redis call under Options.Timeout and the breaker, and
// returns when it started and ended (local unix ns). A failure is counted
// and returned wrapped in ErrUnavailable.
func (m *Manager) call(ctx context.Context, f func(context.Context) error) (t0, t1 int64, err error) {
	if !m.br.Allow() {
		m.st.breakerSkips.Add(1)
		return 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, errBreakerOpen)
	}
	cctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	t0 = time.Now().UnixNano()
	err = f(cctx)
	t1 = time.Now().UnixNano()
	cancel()
	if err == nil || errors.Is(err, redis.Nil) {
		m.br.Success()
		return t0, t1, err
	}
	if ctx.Err() != nil {
		// The caller gave up: not Redis's failure. If the call was a
		// half-open breaker's probe, the next call probes at once.
		m.br.Unused()
		return t0, t1, err
	}
	m.br.Failure()
	if isTimeout(err) {
		m.st.redisTimeouts.Add(1)
	} else {
		m.st.redisErrors.Add(1)
	}
	return t0, t1, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// fallback reports an answer given (or refused) without Redis.
func (m *Manager) fallback(ctx context.Context, op string, err error, d time.Duration) {
	if m.noObs {
		return
	}
	m.o.Observer.Event(ctx, Event{Kind: EventFallback, Op: op, Reason: reasonOf(err), Err: err, Duration: d})
}

// errBreakerOpen is under the ErrUnavailable of a call the breaker did not
// let through.
var errBreakerOpen = errors.New("circuit breaker open")

// reasonOf returns the fallback reason of a failed call.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, errBreakerOpen):
		return ReasonBreakerOpen
	case isTimeout(err):
		return ReasonRedisTimeout
	}
	return ReasonRedisError
}

// isTimeout reports whether err is a timeout (ours or the network's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// drop removes keys from every instance's L1 (this one at once, the others
// through the bus). It runs on ctx's values but not its cancellation (a
// client that went away after its logout reached Redis must not leave the
// session alive in L1), within Options.Timeout.
func (m *Manager) drop(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.Timeout)
	defer cancel()
	if err := m.cache.Delete(ctx, keys...); err != nil {
		if errors.Is(err, tier.ErrClosed) {
			return ErrClosed
		}
		m.st.notPropagated.Add(1)
		return fmt.Errorf("%w: %w", ErrNotPropagated, err)
	}
	return nil
}

// dropAnyway is drop for a write that found nothing to change (perhaps
// the retry of a write whose reply was lost after Redis applied it):
// whatever it may have ended must not live on in any L1, and dropping a
// copy is always safe (the next read goes to Redis). Its error is not the
// caller's.
func (m *Manager) dropAnyway(ctx context.Context, keys ...string) { _ = m.drop(ctx, keys...) }

// dropIfUnknown is dropAnyway for a write that failed with err, if its
// outcome is unknown: it timed out, or its caller left while it was on its
// way, so Redis may have applied it with the reply lost. A write Redis
// surely did not run (the breaker refused it, the connection was refused)
// drops nothing: in an outage, L1 keeps serving the session within its
// bound, and the caller is not held up by a publish that cannot go out.
func (m *Manager) dropIfUnknown(ctx context.Context, err error, keys ...string) {
	if ctx.Err() != nil || isTimeout(err) {
		m.dropAnyway(ctx, keys...)
	}
}

// replyInt reads element i of a script reply as an integer (the scripts
// send numbers as decimal strings).
func replyInt(v []any, i int) (int64, error) {
	if i >= len(v) {
		return 0, fmt.Errorf("short reply (%d elements)", len(v))
	}
	switch x := v[i].(type) {
	case string:
		return strconv.ParseInt(x, 10, 64)
	case int64:
		return x, nil
	}
	return 0, fmt.Errorf("element %d is %T", i, v[i])
}

// sizeCodec lets the L1 cache measure a session without encoding it
// (there is no L2: nothing is ever decoded).
type sizeCodec struct{}

func (sizeCodec) ID() byte     { return 200 }
func (sizeCodec) Name() string { return "session-size" }
func (sizeCodec) Marshal(v any) ([]byte, error) {
	if s, ok := v.(*Session); ok && s != nil {
		return make([]byte, min(s.size(), 1<<20-64)), nil
	}
	return nil, nil
}
func (sizeCodec) Unmarshal([]byte, any) error { return errors.New("session: sessions are not decoded") }
