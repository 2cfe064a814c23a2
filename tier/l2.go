package tier

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
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

// readL2 looks key up in L2. It returns the entry on a hit. On a miss with a
// Leaser L2 and wantLease, it takes the key's lease (one more round trip)
// and returns it, or, if another instance holds it, waits up to LeaseWait
// for that instance's value. Any failure is a miss without a lease; L2
// failures count against the breaker and are reported as fallbacks.
func (c *Cache[V]) readL2(ctx context.Context, r req, start int64, wantLease bool) (hit, stale *Entry[V], lease string) {
	if c.l2 == nil {
		return nil, nil, ""
	}
	if !c.br.allow() {
		c.fallback(ctx, r.key, ReasonBreakerOpen, nil)
		return nil, nil, ""
	}
	if !c.epochKnown.Load() {
		c.ctr.l2Errors.Add(1)
		c.fallback(ctx, r.key, ReasonEpochUnknown, c.errEpoch())
		return nil, nil, ""
	}
	// use decodes b: a hit, or a value to replace (expired, older than a
	// tag or than the entry a refresh started from, or corrupt and deleted).
	use := func(b []byte, tagAt []int64) *Entry[V] {
		e, err := c.decodeChecked(ctx, r, b, start, tagAt)
		switch {
		case err == nil && (!r.refresh || e.Fresh > r.minFresh):
			return e
		case errors.Is(err, errExpired) && e != nil:
			stale = e
		}
		return nil
	}
	// useLeased looks at the value another instance's lease keeps beside
	// its marker: a fresh one is a hit, an expired one a stale candidate.
	useLeased := func(b []byte) *Entry[V] {
		if v := leased(b); len(v) > 0 {
			return use(v, nil)
		}
		return nil
	}
	// One L2 budget for the whole read (GET, then the lease): a caller never
	// waits on Redis longer than L2Timeout, plus LeaseWait only while
	// another instance is known to be loading the key.
	budget, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	b, tagAt, ok := c.l2Get(budget, r)
	if !ok {
		return nil, nil, ""
	}
	replace := false
	if b != nil && !isLease(b) {
		if e := use(b, tagAt); e != nil {
			return e, nil, ""
		}
		replace = true
	} else if e := useLeased(b); e != nil {
		return e, nil, ""
	}
	if c.leaser == nil || !wantLease {
		return nil, stale, ""
	}
	var deadline time.Time
	backoff := leaseBackoffMin
	leaseCtx := budget // after a wait, each L2 call gets its own L2Timeout
	for {
		if b == nil || replace {
			lease := newLease()
			cur, err := c.l2Lease(leaseCtx, r.key, lease, replace)
			if err != nil {
				return nil, stale, ""
			}
			if cur == nil {
				return nil, stale, lease
			}
			b, replace = cur, false
			if e := useLeased(b); e != nil {
				return e, nil, ""
			}
			if !isLease(b) {
				if e := use(b, nil); e != nil {
					return e, nil, ""
				}
				// A value appeared but cannot be used: replace it, once.
				if deadline.IsZero() {
					replace = true
					continue
				}
				return nil, stale, ""
			}
		}
		// Another instance holds the lease: it is loading the key.
		if deadline.IsZero() {
			deadline = time.Now().Add(c.o.LeaseWait)
			c.ctr.leaseWaits.Add(1)
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, stale, "" // load without a lease; L2 is not written
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, stale, ""
		case <-t.C:
		}
		backoff = min(2*backoff, leaseBackoffMax)
		leaseCtx = ctx
		b, tagAt, ok = c.l2GetWithin(ctx, r)
		if !ok {
			return nil, stale, ""
		}
		if b != nil && !isLease(b) {
			if e := use(b, tagAt); e != nil {
				return e, nil, ""
			}
			replace = true
		} else if e := useLeased(b); e != nil {
			return e, nil, ""
		}
	}
}

// l2GetWithin is l2Get with a fresh L2Timeout.
func (c *Cache[V]) l2GetWithin(ctx context.Context, r req) ([]byte, []int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	return c.l2Get(ctx, r)
}

// l2Get reads the bytes of r's key (and, with a TagStore, its tags'
// invalidation times), within ctx's deadline. ok is false when L2 failed; b
// is nil for a miss or a value refused and deleted.
func (c *Cache[V]) l2Get(ctx context.Context, r req) (b []byte, tagAt []int64, ok bool) {
	call := c.call(OpL2Get, r.key)
	octx := c.obs.Begin(ctx, call)
	t0 := time.Now()
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
	res := Result{Duration: time.Since(t0)}
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
	call := c.call(op, key)
	ctx = c.obs.Begin(ctx, call)
	t0 := time.Now()
	l2ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	err := f(l2ctx)
	cancel()
	if isL2Failure(err) {
		c.ctr.l2Errors.Add(1)
		c.br.failure()
	} else {
		c.br.success()
	}
	c.obs.End(ctx, call, Result{Err: err, Duration: time.Since(t0)})
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

// l2Lease takes the lease of key or returns what it holds.
func (c *Cache[V]) l2Lease(ctx context.Context, key, lease string, replace bool) (cur []byte, err error) {
	full := c.Key(key)
	err = c.l2Op(ctx, OpL2Lease, key, func(ctx context.Context) error {
		cur, err = c.leaser.Lease(ctx, full, lease, c.o.LoadTimeout+c.o.L2Timeout, replace)
		return err
	})
	switch {
	case err == nil:
		return cur, nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
		// Bad bytes: they were counted; replace them under a lease.
		c.corrupt(ctx, key, err)
		return nil, err
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
