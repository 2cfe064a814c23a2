package tier

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/backends/ristretto"
	"github.com/tiercache/tiercache/codec"
)

// LoadFunc loads the value of key from the origin. It returns ErrNotFound
// (or an error accepted by Options.IsNotFound) when the key has no value.
//
// NOTE: it runs on the flight's context, not on any one caller's: it keeps
// the first caller's values (trace spans) but is cancelled only by
// Options.LoadTimeout or Close.
type LoadFunc[V any] func(ctx context.Context, key string) (V, error)

// Cache is a two-tier read-through cache of values of type V. It is safe for
// concurrent use. Create it with [New].
type Cache[V any] struct {
	o       Options[V] // immutable after New
	l1      Local[V]
	l1stats LocalStats // nil when l1 does not count
	l2      Remote     // nil: L1 only
	obs     Observer
	noObs   bool
	clock   Clock // nil: time.Now
	prefix  string

	br  breaker
	fl  flights[V]
	ctr counters

	// trustFloor: entries whose read began before it (Created < trustFloor)
	// are not served. Raising it drops L1 as a whole in O(1).
	trustFloor atomic.Int64

	stop      context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// New returns a Cache configured by o (nil means defaults).
func New[V any](o *Options[V]) (*Cache[V], error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache[V]{o: opts, l1: opts.L1, l2: opts.L2, obs: opts.Observer, clock: opts.Clock}
	if c.l1 == nil {
		l1, err := ristretto.New[*Entry[V]](&ristretto.Options{MaxCost: opts.L1MaxCost})
		if err != nil {
			return nil, fmt.Errorf("tier: new L1: %w", err)
		}
		c.l1 = l1
	}
	c.l1stats, _ = c.l1.(LocalStats)
	_, c.noObs = c.obs.(NoopObserver)
	c.prefix = "tc:" + strconv.Itoa(len(opts.Namespace)) + ":" + opts.Namespace + ":"
	c.br = breaker{
		threshold: int32(opts.BreakerFailures),
		cooldown:  opts.BreakerCooldown,
		now:       c.now,
		onChange: func(from, to BreakerState) {
			c.obs.Event(context.Background(), Event{Cache: opts.Name, Kind: EventBreaker, Tier: TierL2, From: from, To: to})
		},
	}
	c.stop, c.cancel = context.WithCancel(context.Background())
	if so, ok := c.obs.(StatsObserver); ok {
		so.Attach(opts.Name, c.Stats)
	}
	return c, nil
}

// Must is like [New] but panics on invalid options.
func Must[V any](o *Options[V]) *Cache[V] {
	c, err := New(o)
	if err != nil {
		panic(err)
	}
	return c
}

// Name returns Options.Name.
func (c *Cache[V]) Name() string { return c.o.Name }

// Key returns the full L2 key under which key is stored.
func (c *Cache[V]) Key(key string) string { return c.prefix + key }

func (c *Cache[V]) now() int64 {
	if c.clock == nil {
		return time.Now().UnixNano()
	}
	return c.clock.Now().UnixNano()
}

// fresh reports whether e may be served now.
func (c *Cache[V]) fresh(e *Entry[V]) bool {
	return c.now() < e.Fresh && e.Created >= c.trustFloor.Load()
}

// GetOrLoad returns the value of key from L1, else L2, else load (once per
// key in the process, however many callers miss together), and caches it.
// It returns an error matching [ErrNotFound] when the key has no value.
//
// NOTE: the value may be shared with other callers: do not mutate it. If the
// loader panics, every caller waiting on it panics with a [*PanicError]; if
// it calls runtime.Goexit, they get [ErrLoaderGoexit]. Either way nothing is
// cached and the next call loads afresh.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load LoadFunc[V]) (V, error) {
	if e, ok := c.l1.Get(key); ok {
		if c.fresh(e) {
			if !e.Negative {
				return e.Value, nil
			}
			c.ctr.negativeHits.Add(1)
			var zero V
			return zero, ErrNotFound
		}
		c.ctr.l1Unserved.Add(1)
	}
	return c.miss(ctx, key, load)
}

// Get returns the value of key from L1, else L2, without loading it. It
// returns [ErrNotFound] when neither tier has it.
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	return c.GetOrLoad(ctx, key, nil)
}

// GetIfPresent returns the value of key if L1 holds a fresh one. It never
// blocks and never leaves the process.
func (c *Cache[V]) GetIfPresent(key string) (V, bool) {
	if e, ok := c.l1.Get(key); ok {
		if c.fresh(e) && !e.Negative {
			return e.Value, true
		}
		c.ctr.l1Unserved.Add(1)
	}
	var zero V
	return zero, false
}

func (c *Cache[V]) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > c.o.MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes, limit %d", ErrInvalidKey, len(key), c.o.MaxKeyBytes)
	}
	return nil
}

// miss is the slow path of GetOrLoad: join or start the flight, then wait.
func (c *Cache[V]) miss(ctx context.Context, key string, load LoadFunc[V]) (V, error) {
	var zero V
	if err := c.checkKey(key); err != nil {
		return zero, err
	}
	cl, leader := c.fl.join(key, c.now())
	if cl == nil {
		return zero, ErrClosed
	}
	c.ctr.misses.Add(1)
	if !c.noObs {
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventMiss, Key: c.obsKey(key), Tier: TierL1})
	}
	if leader {
		go c.run(ctx, key, cl, load)
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		return zero, fmt.Errorf("tier: get %q: %w", key, context.Cause(ctx))
	}
	if cl.panicked != nil {
		panic(cl.panicked)
	}
	return cl.val, cl.err
}

// run is the flight for one key. It runs on its own goroutine and owns one
// count of c.fl.wg.
func (c *Cache[V]) run(ctx context.Context, key string, cl *call[V], load LoadFunc[V]) {
	defer c.fl.wg.Done()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.LoadTimeout)
	stop := context.AfterFunc(c.stop, cancel)
	defer func() {
		stop()
		cancel()
	}()
	start := c.now()

	completed := false
	complete := func() {
		completed = true
		close(cl.done)
	}
	defer func() {
		if !completed { // the loader called runtime.Goexit
			cl.err = fmt.Errorf("tier: load %q: %w", key, ErrLoaderGoexit)
			complete()
		}
		c.fl.forget(key, cl)
	}()

	if e, ok := c.fromL2(fctx, key, start); ok {
		if e.Negative {
			c.ctr.negativeHits.Add(1)
			cl.err = ErrNotFound
		} else {
			cl.val = e.Value
		}
		cl.expires = e.Fresh
		complete()
		c.installL1(cl, key, e, c.cost(key, e.Value, 0))
		return
	}
	if load == nil {
		cl.err = ErrNotFound
		complete()
		return
	}

	v, err := c.callLoader(fctx, key, cl, load)
	switch {
	case cl.panicked != nil:
		complete()
	case err == nil:
		cl.val = v
		cl.expires = c.shareUntil(false)
		complete()
		c.store(fctx, cl, key, v, false, start)
	case c.isNotFound(err):
		if !errors.Is(err, ErrNotFound) {
			err = &notFoundError{err: err}
		}
		cl.err = err
		cl.expires = c.shareUntil(true)
		complete()
		c.store(fctx, cl, key, v, true, start)
	default:
		cl.err = fmt.Errorf("tier: load %q: %w", key, err)
		complete()
	}
}

// shareUntil is how long a completed load may answer late joiners: the
// shortest L1 life its entry can get.
func (c *Cache[V]) shareUntil(negative bool) int64 {
	ttl := c.o.L1TTL
	if negative {
		ttl = min(ttl, c.o.NegativeTTL)
	}
	return c.now() + int64(float64(ttl)*(1-c.o.Jitter))
}

func (c *Cache[V]) isNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || (c.o.IsNotFound != nil && c.o.IsNotFound(err))
}

// callLoader calls load, turning a panic into cl.panicked. A runtime.Goexit
// in load unwinds through here to run's deferred handler.
func (c *Cache[V]) callLoader(ctx context.Context, key string, cl *call[V], load LoadFunc[V]) (v V, err error) {
	call := Call{Cache: c.o.Name, Op: OpLoad, Key: c.obsKey(key)}
	ctx = c.obs.Begin(ctx, call)
	t0 := time.Now()
	c.ctr.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			cl.panicked = newPanicError(r)
			err = cl.panicked
		}
		if err != nil && !c.isNotFound(err) {
			c.ctr.loadErrors.Add(1)
			c.obs.End(ctx, call, Result{Err: err, Duration: time.Since(t0)})
			return
		}
		c.obs.End(ctx, call, Result{Hit: err == nil, Duration: time.Since(t0)})
	}()
	return load(ctx, key)
}

// store encodes a loaded value (or a "not found"), refuses it if too large,
// and writes L2 then L1 unless an invalidation fenced the flight meanwhile.
func (c *Cache[V]) store(ctx context.Context, cl *call[V], key string, v V, negative bool, start int64) {
	now := c.now()
	ttl := c.o.TTL
	if negative {
		ttl = c.o.NegativeTTL
	}
	ttl = c.jitter(ttl)
	h := codec.Header{Codec: c.o.Codec.ID(), Schema: c.o.Schema, Created: now, SoftExpiry: now + int64(ttl), Deadline: now + int64(ttl)}
	if negative {
		h.Flags |= codec.FlagNegative
	}
	enc, err := codec.Encode(c.o.Codec, h, v, c.o.CompressAbove)
	if err == nil && len(enc) > c.o.MaxValueBytes {
		err = &ValueTooLargeError{Size: len(enc), Limit: c.o.MaxValueBytes}
	}
	if err != nil {
		c.ctr.refused.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventValueRefused, Key: c.obsKey(key), Err: err})
		return
	}
	if c.l2 != nil && !c.fl.isFenced(cl) && c.br.allow() {
		_ = c.l2Set(ctx, key, enc, ttl) // counted and reported by l2Set; the value is still returned and kept in L1.
	}
	l1ttl := min(ttl, c.jitter(c.o.L1TTL))
	e := &Entry[V]{Value: v, Negative: negative, Created: start, Fresh: now + int64(l1ttl), Deadline: now + int64(l1ttl)}
	c.installL1(cl, key, e, c.cost(key, v, len(enc)))
}

// installL1 puts e in L1 unless cl was fenced, then waits until the write is
// visible so that the flight can leave the table.
func (c *Cache[V]) installL1(cl *call[V], key string, e *Entry[V], cost int64) {
	ttl := time.Duration(e.Deadline - c.now())
	if ttl <= 0 {
		return
	}
	accepted := false
	c.fl.install(cl, func() { accepted = c.l1.Set(key, e, cost, ttl) })
	if accepted {
		c.l1.Wait()
	}
}

func (c *Cache[V]) cost(key string, v V, encoded int) int64 {
	if c.o.Cost != nil {
		return c.o.Cost(key, v, encoded)
	}
	return int64(encoded + len(key) + 128)
}

func (c *Cache[V]) jitter(d time.Duration) time.Duration {
	if c.o.Jitter == 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*c.o.Jitter*float64(d))
}

// fromL2 reads key from L2 and decodes it. Any failure is a miss; L2
// failures count against the breaker and are reported as fallbacks.
func (c *Cache[V]) fromL2(ctx context.Context, key string, start int64) (*Entry[V], bool) {
	if c.l2 == nil {
		return nil, false
	}
	if !c.br.allow() {
		c.fallback(ctx, key, ReasonBreakerOpen, nil)
		return nil, false
	}
	call := Call{Cache: c.o.Name, Op: OpL2Get, Key: c.obsKey(key)}
	octx := c.obs.Begin(ctx, call)
	t0 := time.Now()
	l2ctx, cancel := context.WithTimeout(octx, c.o.L2Timeout)
	b, err := c.l2.Get(l2ctx, c.prefix+key)
	cancel()
	var e *Entry[V]
	if err == nil {
		e, err = c.decode(b, start)
	}
	res := Result{Hit: err == nil, Duration: time.Since(t0)}
	switch {
	case err == nil:
		c.br.success()
		c.ctr.l2Hits.Add(1)
	case errors.Is(err, ErrNotFound):
		c.br.success()
		err = nil
	case errors.Is(err, codec.ErrCorrupt), errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
		c.br.success()
		c.ctr.decodeErrors.Add(1)
		c.obs.Event(octx, Event{Cache: c.o.Name, Kind: EventDecodeError, Key: call.Key, Tier: TierL2, Err: err})
		c.l2Delete(octx, c.prefix+key)
	case ctx.Err() != nil && c.stop.Err() != nil: // closing: not Redis's fault
		res.Err = err
	default:
		c.l2Failed(err)
		res.Err = err
		reason := ReasonL2Error
		if errors.Is(err, context.DeadlineExceeded) {
			reason = ReasonL2Timeout
		}
		c.fallback(octx, key, reason, err)
	}
	c.obs.End(octx, call, res)
	return e, res.Hit
}

func (c *Cache[V]) l2Failed(error) {
	c.ctr.l2Errors.Add(1)
	c.br.failure()
}

func (c *Cache[V]) fallback(ctx context.Context, key, reason string, err error) {
	c.ctr.fallbacks.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventFallback, Key: c.obsKey(key), Tier: TierL2, Reason: reason, Err: err})
}

// decode turns L2 bytes into an L1 entry. An entry past its soft expiry is
// a miss.
func (c *Cache[V]) decode(b []byte, start int64) (*Entry[V], error) {
	var v V
	h, err := codec.Decode(c.o.Codec, b, c.o.Schema, c.o.MaxValueBytes, &v)
	if err != nil {
		return nil, err
	}
	now := c.now()
	if h.SoftExpiry <= now {
		return nil, ErrNotFound
	}
	fresh := min(h.SoftExpiry, now+int64(c.jitter(c.o.L1TTL)))
	return &Entry[V]{
		Value:    v,
		Negative: h.Flags&codec.FlagNegative != 0,
		Created:  start,
		Fresh:    fresh,
		Deadline: max(fresh, min(h.Deadline, now+int64(c.o.L1TTL))),
	}, nil
}

func (c *Cache[V]) l2Set(ctx context.Context, key string, enc []byte, ttl time.Duration) error {
	call := Call{Cache: c.o.Name, Op: OpL2Set, Key: c.obsKey(key)}
	ctx = c.obs.Begin(ctx, call)
	t0 := time.Now()
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	err := c.l2.Set(l2ctx, c.prefix+key, enc, ttl)
	cancel()
	if err != nil {
		c.l2Failed(err)
	} else {
		c.br.success()
	}
	c.obs.End(ctx, call, Result{Err: err, Duration: time.Since(t0)})
	return err
}

func (c *Cache[V]) l2Delete(ctx context.Context, fullKeys ...string) error {
	call := Call{Cache: c.o.Name, Op: OpL2Delete}
	if len(fullKeys) == 1 {
		call.Key = c.obsKey(fullKeys[0][len(c.prefix):])
	}
	ctx = c.obs.Begin(ctx, call)
	t0 := time.Now()
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	err := c.l2.Delete(l2ctx, fullKeys...)
	cancel()
	if err != nil {
		c.l2Failed(err)
	} else {
		c.br.success()
	}
	c.obs.End(ctx, call, Result{Err: err, Duration: time.Since(t0)})
	return err
}

// Set stores v under key in L1 and L2 for ttl (0 means Options.TTL), and
// fences the loads of key that are running. A value too large to cache is
// refused with a [*ValueTooLargeError], and the old value of key is dropped
// from both tiers so it is not served after the call. An L2 failure returns
// an error matching [ErrL2]; L1 is updated anyway.
func (c *Cache[V]) Set(ctx context.Context, key string, v V, ttl time.Duration) error {
	if err := c.checkKey(key); err != nil {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	if ttl <= 0 {
		ttl = c.o.TTL
	}
	ttl = c.jitter(ttl)
	now := c.now()
	h := codec.Header{Codec: c.o.Codec.ID(), Schema: c.o.Schema, Created: now, SoftExpiry: now + int64(ttl), Deadline: now + int64(ttl)}
	enc, err := codec.Encode(c.o.Codec, h, v, c.o.CompressAbove)
	if err == nil && len(enc) > c.o.MaxValueBytes {
		err = &ValueTooLargeError{Size: len(enc), Limit: c.o.MaxValueBytes}
	}
	if err != nil {
		c.ctr.refused.Add(1)
		c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventValueRefused, Key: c.obsKey(key), Err: err})
		derr := c.Delete(ctx, key)
		return errors.Join(fmt.Errorf("tier: set %q: %w", key, err), derr)
	}
	c.fl.fence(key)
	l1ttl := min(ttl, c.jitter(c.o.L1TTL))
	if c.l1.Set(key, &Entry[V]{Value: v, Created: now, Fresh: now + int64(l1ttl), Deadline: now + int64(l1ttl)}, c.cost(key, v, len(enc)), l1ttl) {
		c.l1.Wait()
	}
	if c.l2 == nil {
		return nil
	}
	if !c.br.allow() {
		return fmt.Errorf("tier: set %q: %w (circuit breaker open)", key, ErrL2)
	}
	if err := c.l2Set(ctx, key, enc, ttl); err != nil {
		return fmt.Errorf("tier: set %q: %w: %w", key, ErrL2, err)
	}
	return nil
}

// Delete removes keys from L1 and L2 and fences the loads of those keys that
// are running, so none of them installs a value read before the call. Call
// it after the origin has changed. An L2 failure returns an error matching
// [ErrL2]; L1 is cleared anyway.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	if c.isClosed() {
		return ErrClosed
	}
	full := make([]string, 0, len(keys))
	for _, k := range keys {
		if err := c.checkKey(k); err != nil {
			return err
		}
		full = append(full, c.prefix+k)
	}
	for _, k := range keys {
		c.fl.fence(k)
		c.l1.Delete(k)
	}
	if c.l2 == nil || len(full) == 0 {
		return nil
	}
	if !c.br.allow() {
		return fmt.Errorf("tier: delete: %w (circuit breaker open)", ErrL2)
	}
	if err := c.l2Delete(ctx, full...); err != nil {
		return fmt.Errorf("tier: delete: %w: %w", ErrL2, err)
	}
	return nil
}

// dropL1 stops trusting every L1 entry whose read began before now, and
// fences the running loads. It costs O(1): entries are replaced lazily.
func (c *Cache[V]) dropL1(ctx context.Context, reason string) {
	c.fl.fenceAll()
	c.trustFloor.Store(c.now() + 1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventL1Dropped, Tier: TierL1, Reason: reason})
}

// DropLocal makes this instance's L1 forget every entry (in O(1), without
// walking it) and fences the running loads. L2 and other instances are not
// touched.
func (c *Cache[V]) DropLocal(ctx context.Context) {
	c.dropL1(ctx, "drop_local")
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	s := Stats{
		Misses:       c.ctr.misses.Load(),
		L2Hits:       c.ctr.l2Hits.Load(),
		NegativeHits: c.ctr.negativeHits.Load(),
		Loads:        c.ctr.loads.Load(),
		LoadErrors:   c.ctr.loadErrors.Load(),
		Fallbacks:    c.ctr.fallbacks.Load(),
		L2Errors:     c.ctr.l2Errors.Load(),
		DecodeErrors: c.ctr.decodeErrors.Load(),
		Refused:      c.ctr.refused.Load(),
		Breaker:      BreakerState(c.br.state.Load()),
		BreakerOpens: c.br.opens.Load(),
	}
	if ls := c.l1stats; ls != nil {
		if h, u := ls.Hits(), c.ctr.l1Unserved.Load(); h > u {
			s.L1Hits = h - u
		}
		s.L1Cost = ls.Cost()
		s.L1SetsDropped = ls.SetsDropped()
		s.L1SetsRejected = ls.SetsRejected()
		s.L1Evicted = ls.Evicted()
	}
	return s
}

func (c *Cache[V]) isClosed() bool {
	return c.stop.Err() != nil
}

// Close stops the cache: running loads are cancelled, Close waits for the
// cache's goroutines to exit, then closes L1. Later calls return ErrClosed.
// Close is idempotent and always returns nil. It does not close the Redis
// client behind L2, which belongs to the caller.
func (c *Cache[V]) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.fl.close()
		c.l1.Close()
	})
	return nil
}

// obsKey is the key as the observer may see it.
func (c *Cache[V]) obsKey(key string) string {
	if c.noObs || c.o.ObserveRawKeys {
		return key
	}
	m := hmac.New(sha256.New, c.o.KeyHashSecret)
	m.Write([]byte(key))
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0])[:8])
}
