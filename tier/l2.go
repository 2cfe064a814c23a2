package tier

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/codec"
)

// errStaleTag reports an L2 value older than an invalidation of one of its
// tags; it is a miss, and the value may be replaced.
var errStaleTag = errors.New("tier: value older than a tag invalidation")

// errExpired reports an L2 value past its fresh life but not past its
// fail-safe deadline: a miss, but one that may stand in for a failed load.
var errExpired = errors.New("tier: value past its fresh life")

// Lease waiting: the first re-read after leaseBackoffMin, doubling up to
// leaseBackoffMax, until Options.LeaseWait.
const (
	leaseBackoffMin = time.Millisecond
	leaseBackoffMax = 20 * time.Millisecond
)

func isLease(b []byte) bool { return bytes.HasPrefix(b, []byte(LeasePrefix)) }

// leased returns the value a lease marker keeps beside it (the stale value
// it replaced), or nil.
func leased(b []byte) []byte {
	if !isLease(b) {
		return nil
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return nil
}

func newLease() string {
	return LeasePrefix + strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
}

// l2read is one flight's read of its key in L2: a first round trip on the
// leader's goroutine ([Cache.l2Start]), and, only when it is needed, the
// rest (taking the lease, waiting for another instance's load) on the
// flight's goroutine ([Cache.l2Finish]).
type l2read[V any] struct {
	hit   *Entry[V] // a usable value
	stale *Entry[V] // a value past its fresh life that may stand in for a failed load
	lease string    // the lease this flight holds: it loads and writes L2

	b       []byte // what the first round trip found, for l2Finish
	replace bool   // b is a value to replace under a lease
	open    bool   // l2Start left the read open: l2Finish must end it
}

// use decodes b, read at start: a hit, or a value to replace (expired,
// older than a tag or than the entry a refresh started from, or corrupt and
// deleted).
func (c *Cache[V]) use(ctx context.Context, s *l2read[V], r req, b []byte, tagAt []int64, start int64) *Entry[V] {
	e, err := c.decodeChecked(ctx, r, b, start, tagAt)
	switch {
	case err == nil && (!r.refresh || e.Fresh > r.minFresh):
		return e
	case errors.Is(err, errExpired) && e != nil:
		s.stale = e
	}
	return nil
}

// useLeased looks at the value another instance's lease keeps beside its
// marker: a fresh one is a hit, an expired one a stale candidate.
func (c *Cache[V]) useLeased(ctx context.Context, s *l2read[V], r req, b []byte, start int64) *Entry[V] {
	if v := leased(b); len(v) > 0 {
		return c.use(ctx, s, r, v, nil, start)
	}
	return nil
}

// l2Start makes the first L2 round trip of a read of r and reports whether
// the read is over: a hit (s.hit), a miss with the lease taken (s.lease), a
// miss with nothing more to do, or a failure (a fallback, already
// reported). It waits at most L2Timeout, also when it runs on the caller's
// goroutine.
//
// The round trip is a plain read, or, when the caller will load on a miss
// and L2 reads of this cache mostly miss, the get-or-lease script, which
// answers a hit as well: a miss then costs one round trip instead of two.
func (c *Cache[V]) l2Start(ctx context.Context, r req, start int64, wantLease bool, s *l2read[V]) bool {
	if c.l2 == nil {
		return true
	}
	if !c.br.allow() {
		c.fallback(ctx, r.key, ReasonBreakerOpen, nil)
		return true
	}
	if !c.epochKnown.Load() {
		c.ctr.l2Errors.Add(1)
		c.fallback(ctx, r.key, ReasonEpochUnknown, c.errEpoch())
		return true
	}
	wantLease = wantLease && c.leaser != nil
	budget, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	var (
		b        []byte
		tagAt    []int64
		viaLease bool // b came from Lease, which checked that a marker can be live
	)
	if wantLease && len(r.tags) == 0 && c.l2Misses.leaseFirst() {
		viaLease = true
		lease := newLease()
		cur, err := c.l2Lease(budget, r.key, lease, false)
		switch {
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
			// The bad bytes were reported and deleted: take the lease on
			// the flight, as after a plain read that found them.
			return false
		case err != nil:
			return true
		}
		c.l2Misses.note(cur == nil || isLease(cur))
		if cur == nil {
			s.lease = lease
			return true
		}
		b = cur
	} else {
		var ok bool
		b, tagAt, ok = c.l2Get(budget, r)
		if !ok {
			return true
		}
		c.l2Misses.note(b == nil || isLease(b))
	}
	if b != nil && !isLease(b) {
		if s.hit = c.use(ctx, s, r, b, tagAt, start); s.hit != nil {
			return true
		}
		s.replace = true
	} else if s.hit = c.useLeased(ctx, s, r, b, start); s.hit != nil {
		return true
	}
	if !wantLease {
		return true
	}
	if viaLease || !isLease(b) {
		s.b = b
	}
	// else l2Finish starts with Lease, which sees the marker again and
	// reports one that cannot be a live lease as bad bytes, instead of
	// waiting LeaseWait for it.
	return false
}

// l2Finish ends a read that l2Start left open: it takes the key's lease
// and returns with it, or, if another instance holds it, waits up to
// LeaseWait for that instance's value. Any failure ends the read without a
// lease. Each L2 round trip gets its own L2Timeout; the waits between them
// are spent only while another instance is known to be loading the key.
func (c *Cache[V]) l2Finish(ctx context.Context, r req, start int64, s *l2read[V]) {
	b, replace := s.b, s.replace
	var deadline time.Time
	backoff := leaseBackoffMin
	badBytes := false // Lease found bad bytes (reported and deleted by l2Lease)
	for {
		if b == nil || replace {
			lease := newLease()
			cur, err := c.l2LeaseWithin(ctx, r.key, lease, replace)
			if (errors.Is(err, ErrCorrupt) || errors.Is(err, ErrValueTooLarge)) && !badBytes {
				badBytes, b, replace = true, nil, false
				continue // they are gone: take the lease, once
			}
			if err != nil {
				return
			}
			if cur == nil {
				s.lease = lease
				return
			}
			b, replace = cur, false
			if s.hit = c.useLeased(ctx, s, r, b, start); s.hit != nil {
				return
			}
			if !isLease(b) {
				if s.hit = c.use(ctx, s, r, b, nil, start); s.hit != nil {
					return
				}
				// A value appeared but cannot be used: replace it, once.
				if deadline.IsZero() {
					replace = true
					continue
				}
				return
			}
		}
		// Another instance holds the lease: it is loading the key.
		if deadline.IsZero() {
			deadline = time.Now().Add(c.o.LeaseWait)
			c.ctr.leaseWaits.Add(1)
		}
		if time.Now().Add(backoff).After(deadline) {
			return // load without a lease; L2 is not written
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, leaseBackoffMax)
		var (
			tagAt []int64
			ok    bool
		)
		b, tagAt, ok = c.l2GetWithin(ctx, r)
		if !ok {
			return
		}
		if b != nil && !isLease(b) {
			if s.hit = c.use(ctx, s, r, b, tagAt, start); s.hit != nil {
				return
			}
			replace = true
		} else if s.hit = c.useLeased(ctx, s, r, b, start); s.hit != nil {
			return
		}
	}
}

// missScore tells whether a cache's L2 reads mostly miss: it rises by 1
// per miss and falls by missScoreHit per hit, within [0, 2*missScoreAt].
// The get-or-lease script costs a little more than a plain read on a hit
// and saves a whole round trip on a miss; on this machine the script pays
// once more than about one read in five misses, which is where the score
// drifts up past missScoreAt (the weights are 1 and 4).
type missScore struct{ n atomic.Int32 }

const (
	missScoreAt  = 32
	missScoreHit = 4
)

func (m *missScore) leaseFirst() bool { return m.n.Load() >= missScoreAt }

// note records one L2 read. Concurrent updates may be lost: the score is a
// hint.
func (m *missScore) note(miss bool) {
	n := m.n.Load()
	if miss {
		n = min(n+1, 2*missScoreAt)
	} else {
		n = max(n-missScoreHit, 0)
	}
	m.n.Store(n)
}

// l2GetWithin is l2Get with a fresh L2Timeout.
func (c *Cache[V]) l2GetWithin(ctx context.Context, r req) ([]byte, []int64, bool) {
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	return c.l2Get(l2ctx, r)
}

// l2LeaseWithin is l2Lease with a fresh L2Timeout.
func (c *Cache[V]) l2LeaseWithin(ctx context.Context, key, lease string, replace bool) ([]byte, error) {
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	return c.l2Lease(l2ctx, key, lease, replace)
}

// l2Get reads the bytes of r's key (and, with a TagStore, its tags'
// invalidation times), within ctx's deadline. ok is false when L2 failed; b
// is nil for a miss or a value refused and deleted.
func (c *Cache[V]) l2Get(ctx context.Context, r req) (b []byte, tagAt []int64, ok bool) {
	call := c.call(OpL2Get, r.key)
	octx := c.obs.Begin(ctx, call)
	t0 := c.opStart()
	l2ctx := octx
	var err error
	if len(r.tags) > 0 && c.tagger != nil {
		tagKeys := make([]string, len(r.tags))
		for i, t := range r.tags {
			tagKeys[i] = c.tagPfx + t
		}
		b, tagAt, err = c.tagger.GetTagged(l2ctx, c.Key(r.key), tagKeys)
	} else {
		b, err = c.l2.Get(l2ctx, c.Key(r.key))
	}
	res := Result{Duration: opDuration(t0)}
	switch {
	case err == nil:
		c.br.success()
		res.Hit = !isLease(b)
		ok = true
	case errors.Is(err, ErrNotFound):
		c.br.success()
		b, ok = nil, true
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
		c.br.success()
		c.corrupt(octx, r.key, err)
		b, ok = nil, true
	case c.stop.Err() != nil: // closing: not Redis's fault
		res.Err = err
	default:
		c.l2Failed(octx, r.key, err)
		res.Err = err
	}
	c.obs.End(octx, call, res)
	return b, tagAt, ok
}

// decodeChecked decodes b as read at start and checks it against the
// invalidation times of r's tags: those read from L2 with it (tagAt, the
// invalidators' clocks) and those this instance heard of; the value's
// creation time is the writer's clock, so both allow MaxClockSkew. A
// corrupt value is reported and deleted.
func (c *Cache[V]) decodeChecked(ctx context.Context, r req, b []byte, start int64, tagAt []int64) (*Entry[V], error) {
	e, h, err := c.decode(b, start)
	switch {
	case err == nil, errors.Is(err, errExpired):
	case errors.Is(err, ErrNotFound):
		return nil, err
	default:
		c.corrupt(ctx, r.key, err)
		return nil, err
	}
	if len(r.tags) > 0 {
		skew := int64(c.o.MaxClockSkew)
		for _, at := range tagAt {
			if at > 0 && h.Created <= at+skew {
				return nil, errStaleTag
			}
		}
		if !c.tags.validWithin(r.tags, h.Created, skew) {
			return nil, errStaleTag
		}
	}
	e.Tags = r.tags
	if err == nil {
		c.ctr.l2Hits.Add(1)
	}
	return e, err
}

// corrupt reports bad bytes under key and deletes them.
func (c *Cache[V]) corrupt(ctx context.Context, key string, err error) {
	c.ctr.decodeErrors.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventDecodeError, Key: c.obsKey(key), Tier: TierL2, Err: err})
	_ = c.l2Delete(ctx, key) // a failure is counted by l2Delete; the next miss retries.
}

// decode turns L2 bytes into an L1 entry read at start. A value past its
// soft expiry is ErrNotFound.
func (c *Cache[V]) decode(b []byte, start int64) (*Entry[V], codec.Header, error) {
	var v V
	h, err := codec.Decode(c.o.Codec, b, c.o.Schema, c.o.MaxValueBytes, &v)
	if err != nil {
		return nil, h, err
	}
	now := c.now()
	negative := h.Flags&codec.FlagNegative != 0
	if h.SoftExpiry <= now {
		if now < h.Deadline && c.o.FailSafe > 0 {
			return &Entry[V]{Value: v, Negative: negative, Created: start, Fresh: h.SoftExpiry, Deadline: h.Deadline}, h, errExpired
		}
		return nil, h, ErrNotFound
	}
	ttl := time.Duration(min(h.SoftExpiry-now, int64(c.jitter(c.o.L1TTL))))
	e := c.newEntry(v, negative, nil, start, now, ttl)
	e.Deadline = min(e.Deadline, max(e.Fresh, h.Deadline))
	return e, h, nil
}

func (c *Cache[V]) l2Failed(ctx context.Context, key string, err error) {
	c.ctr.l2Errors.Add(1)
	c.br.failure()
	c.l2FailedEvent(ctx, key, err)
}

// l2FailedEvent reports a read that falls back because L2 failed.
func (c *Cache[V]) l2FailedEvent(ctx context.Context, key string, err error) {
	reason := ReasonL2Error
	var te interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout()) {
		reason = ReasonL2Timeout
	}
	c.fallback(ctx, key, reason, err)
}

func (c *Cache[V]) fallback(ctx context.Context, key, reason string, err error) {
	c.ctr.fallbacks.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventFallback, Key: c.obsKey(key), Tier: TierL2, Reason: reason, Err: err})
}

// l2Op runs one L2 operation with the observer and the breaker's
// accounting, within L2Timeout (and ctx's own deadline, if sooner).
func (c *Cache[V]) l2Op(ctx context.Context, op Op, key string, f func(ctx context.Context) error) error {
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	return c.l2Call(l2ctx, op, key, f)
}

// l2Call is l2Op within ctx's deadline.
func (c *Cache[V]) l2Call(ctx context.Context, op Op, key string, f func(ctx context.Context) error) error {
	return c.l2CallHit(ctx, op, key, func(ctx context.Context) (bool, error) { return false, f(ctx) })
}

// l2CallHit is l2Call for an operation that can find a value (reported as
// Result.Hit).
func (c *Cache[V]) l2CallHit(ctx context.Context, op Op, key string, f func(ctx context.Context) (bool, error)) error {
	call := c.call(op, key)
	ctx = c.obs.Begin(ctx, call)
	t0 := c.opStart()
	hit, err := f(ctx)
	switch {
	case !isL2Failure(err):
		c.br.success()
	case c.stop.Err() == nil: // closing: not Redis's fault
		c.ctr.l2Errors.Add(1)
		c.br.failure()
	}
	res := Result{Hit: hit && err == nil, Duration: opDuration(t0)}
	if isL2Failure(err) {
		res.Err = err // a miss or bad bytes (reported as a decode error) is not a failure
	}
	c.obs.End(ctx, call, res)
	return err
}

// isL2Failure reports whether err means L2 did not answer properly (as
// opposed to answering "missing" or "bad bytes").
func isL2Failure(err error) bool {
	return err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrValueTooLarge)
}

func (c *Cache[V]) l2Set(ctx context.Context, key string, enc []byte, ttl time.Duration) error {
	return c.l2Op(ctx, OpL2Set, key, func(ctx context.Context) error {
		return c.l2.Set(ctx, c.Key(key), enc, ttl)
	})
}

func (c *Cache[V]) l2SetLeased(ctx context.Context, key, lease string, enc []byte, ttl time.Duration) (ok bool, err error) {
	err = c.l2Op(ctx, OpL2Set, key, func(ctx context.Context) error {
		ok, err = c.leaser.SetLeased(ctx, c.Key(key), lease, enc, ttl)
		return err
	})
	return ok, err
}

// l2Lease takes the lease of key or returns what it holds, within ctx's
// deadline.
func (c *Cache[V]) l2Lease(ctx context.Context, key, lease string, replace bool) (cur []byte, err error) {
	full := c.Key(key)
	err = c.l2CallHit(ctx, OpL2Lease, key, func(ctx context.Context) (bool, error) {
		cur, err = c.leaser.Lease(ctx, full, lease, c.o.LoadTimeout+c.o.L2Timeout, replace)
		return cur != nil && !isLease(cur), err
	})
	switch {
	case err == nil:
		return cur, nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
		// Bad bytes: they were counted; replace them under a lease.
		c.corrupt(ctx, key, err)
		return nil, err
	}
	if isL2Failure(err) && c.stop.Err() == nil {
		c.l2FailedEvent(ctx, key, err)
	}
	return nil, err
}

// l2Delete deletes keys (the user's keys) from L2.
func (c *Cache[V]) l2Delete(ctx context.Context, keys ...string) error {
	key := ""
	if len(keys) == 1 {
		key = keys[0]
	}
	pfx := *c.pfx.Load()
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = pfx + k
	}
	return c.l2Op(ctx, OpL2Delete, key, func(ctx context.Context) error {
		return c.l2.Delete(ctx, full...)
	})
}
