package tier

// l2read.go: a flight's read of its key in L2: the first round trip, the
// lease, and what each can end in.

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"
)

// l2Outcome is where a flight's L2 read stands.
type l2Outcome uint8

const (
	// l2Unread: L2 not asked yet.
	l2Unread l2Outcome = iota
	// l2Hit: l2Result.hit holds a usable entry.
	l2Hit
	// l2Leased: a miss, and l2Result.lease is this flight's: load, then
	// write L2 under the lease.
	l2Leased
	// l2Miss: a miss, without a lease (none wanted: a Get, or an L2 that is
	// not a Leaser; or none to be had: another instance's load outlived
	// LeaseWait). Load; with a Leaser, L2 is not written (I4).
	l2Miss
	// l2Failed: L2 could not be asked or did not answer (l2Result.err says
	// why: the breaker, the epoch, an L2 error); the fallback was reported.
	// Load as after a miss.
	l2Failed
	// l2LeaseNeeded: the first round trip found no usable value, and the
	// flight will load: take the key's lease, or wait for the instance that
	// holds it (leaseOrWait, on the flight's goroutine, from l2Result.next).
	l2LeaseNeeded
)

// leaseStep is where leaseOrWait starts from.
type leaseStep uint8

const (
	takeLease    leaseStep = iota // nothing under the key: take the lease
	replaceValue                  // an unusable value: take the lease in its place, keeping the value beside the marker
	awaitLease                    // another instance's lease: wait for its value
)

// l2Result is what a flight's L2 read found.
type l2Result[V any] struct {
	outcome l2Outcome
	hit     *Entry[V] // l2Hit
	lease   string    // l2Leased: the marker this flight stored
	err     error     // l2Failed
	next    leaseStep // l2LeaseNeeded
	// stale is a value past its fresh life met on the way (in L2, or kept
	// beside a lease marker), which may stand in for a failed load; any
	// outcome but l2Hit.
	stale *Entry[V]
}

// Lease waiting: the first re-read after leaseBackoffMin, doubling up to
// leaseBackoffMax, until Options.LeaseWait.
const (
	leaseBackoffMin = time.Millisecond
	leaseBackoffMax = 20 * time.Millisecond
)

// readL2 makes f's first L2 round trip, within L2Timeout, and returns its
// outcome (also in f.l2.outcome): l2Hit, l2Leased, l2Miss, l2Failed, or,
// when the flight will load and found no usable value, l2LeaseNeeded.
//
// The round trip is a plain read, or, when the flight will load and more
// than about one of the cache's L2 reads in five misses, get-or-lease,
// which answers a hit as well: a miss then costs one round trip before the
// load instead of two.
func (f *flight[V]) readL2(ctx context.Context) l2Outcome {
	c := f.c
	if c.l2 == nil {
		return f.l2.end(l2Miss)
	}
	full := c.Key(f.key)
	br := c.breakerOfFull(full)
	if err := c.l2Gate(ctx, br, f.key); err != nil {
		f.l2.err = err
		return f.l2.end(l2Failed)
	}
	wantLease := f.load != nil && c.leaser != nil
	budget, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	var (
		b        []byte
		tagAt    []int64
		err      error
		viaLease bool // b came from Lease, which checked that a marker can be live
	)
	if wantLease && len(f.cl.tags) == 0 && c.l2Misses.leaseFirst() {
		viaLease = true
		lease := newLease()
		b, err = c.l2Lease(budget, br, f.key, full, lease, false)
		switch {
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrValueTooLarge):
			// The bad bytes were reported and deleted: take the lease on
			// the flight, as after a plain read that found them.
			f.l2.next = takeLease
			return f.l2.end(l2LeaseNeeded)
		case err == nil && b == nil:
			c.l2Misses.note(true)
			f.l2.lease = lease
			return f.l2.end(l2Leased)
		}
	} else {
		b, tagAt, err = c.l2Get(budget, br, f.key, full, f.cl.tags)
	}
	if err != nil {
		f.l2.err = err
		return f.l2.end(l2Failed)
	}
	c.l2Misses.note(b == nil || isLease(b))
	switch {
	case f.look(ctx, b, tagAt):
		return f.l2.end(l2Hit)
	case !wantLease:
		return f.l2.end(l2Miss)
	}
	f.l2.next = nextStep(b)
	if f.l2.next == awaitLease && !viaLease {
		// A plain read cannot tell a live lease from a marker left without
		// a TTL (or with far more than a lease gets): start with Lease,
		// which sees the marker again and reports a dead one as bad bytes
		// instead of waiting LeaseWait for a load that is not running.
		f.l2.next = takeLease
	}
	return f.l2.end(l2LeaseNeeded)
}

// leaseOrWait ends a read that readL2 left at l2LeaseNeeded: it takes the
// key's lease (l2Leased), or, while another instance holds it, waits up to
// LeaseWait for that instance's value (l2Hit), then loads without a lease
// (l2Miss). A failure ends the read without a lease (l2Failed). Each round
// trip gets its own L2Timeout; the waits between them are spent only while
// another instance is known to be loading the key.
func (f *flight[V]) leaseOrWait(ctx context.Context) {
	c := f.c
	step := f.l2.next
	var deadline time.Time // of the wait; zero until it starts
	backoff := leaseBackoffMin
	badBytes := false // Lease found bad bytes (reported and deleted by l2Lease)
	for {
		if step != awaitLease {
			lease := newLease()
			cur, err := c.l2LeaseWithin(ctx, f.key, lease, step == replaceValue)
			switch {
			case (errors.Is(err, ErrCorrupt) || errors.Is(err, ErrValueTooLarge)) && !badBytes:
				badBytes, step = true, takeLease
				continue // they are gone: take the lease, once
			case err != nil:
				f.l2.err = err
				f.l2.end(l2Failed)
				return
			case cur == nil:
				f.l2.lease = lease
				f.l2.end(l2Leased)
				return
			case f.look(ctx, cur, nil):
				f.l2.end(l2Hit)
				return
			case !isLease(cur):
				// A value appeared but cannot be used: replace it, once.
				// (Lease with replace never returns a value.)
				if !deadline.IsZero() {
					f.l2.end(l2Miss)
					return
				}
				step = replaceValue
				continue
			}
		}
		// Another instance holds the lease: it is loading the key.
		if deadline.IsZero() {
			deadline = time.Now().Add(c.o.LeaseWait)
			c.ctr.leaseWaits.Add(1)
		}
		if time.Now().Add(backoff).After(deadline) || !sleepCtx(ctx, backoff) {
			f.l2.end(l2Miss) // load without a lease; L2 is not written
			return
		}
		backoff = min(2*backoff, leaseBackoffMax)
		b, tagAt, err := c.l2GetWithin(ctx, f.key, f.cl.tags)
		switch {
		case err != nil:
			f.l2.err = err
			f.l2.end(l2Failed)
			return
		case f.look(ctx, b, tagAt):
			f.l2.end(l2Hit)
			return
		}
		step = nextStep(b)
	}
}

// end records outcome and returns it.
func (r *l2Result[V]) end(outcome l2Outcome) l2Outcome {
	r.outcome = outcome
	return outcome
}

// nextStep is where the lease step starts after a round trip found b.
func nextStep(b []byte) leaseStep {
	switch {
	case b == nil:
		return takeLease
	case isLease(b):
		return awaitLease
	}
	return replaceValue
}

// look sorts what a round trip found under f's key and reports whether it
// is a hit (then in f.l2.hit): a value, or the value another instance's
// lease keeps beside its marker. A value past its fresh life is kept in
// f.l2.stale (it may stand in for a failed load); bad bytes are deleted; a
// refresh takes only a value fresher than the one it started from.
func (f *flight[V]) look(ctx context.Context, b []byte, tagAt []int64) bool {
	if isLease(b) {
		b, tagAt = leased(b), nil
	}
	if len(b) == 0 {
		return false
	}
	e, err := f.c.fromL2(ctx, f.key, f.cl.tags, b, tagAt, f.start())
	switch {
	case err == nil && (!f.refresh || e.Fresh > f.minFresh):
		f.l2.hit = e
		return true
	case errors.Is(err, errExpired):
		f.l2.stale = e
	case errors.Is(err, ErrCorrupt):
		_, _ = f.c.l2Delete(ctx, f.key) // a failure is counted by l2Delete; the next miss retries
	}
	return false
}

// sleepCtx sleeps for d, or until ctx ends; it reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// l2Gate returns why L2 must not be asked now for key, on the shard of br,
// or nil: the shard's breaker is open, or the shard is held, or epochGate
// or deleteGate says no. It reports the fallback.
func (c *Cache[V]) l2Gate(ctx context.Context, br *shard, key string) error {
	if !br.Allow() {
		reason, err := br.refused()
		c.fallback(ctx, key, reason, nil)
		return err
	}
	if err := c.epochGate(ctx, key); err != nil {
		return err
	}
	return c.deleteGate(ctx, key)
}

// deleteGate returns errDeletePending, and reports the fallback, when this
// instance's Delete of key has not reached L2 yet (it waits for replay):
// what L2 holds is what it deleted. Single and batch reads share it.
func (c *Cache[V]) deleteGate(ctx context.Context, key string) error {
	if !c.out.pendingL2(key) {
		return nil
	}
	c.fallback(ctx, key, ReasonDeletePending, nil)
	return errDeletePending
}

// epochGate returns why no L2 key may be named now, or nil: the
// namespace's epoch is not known, or an epoch move is owed. That is counted
// as an L2 error and reported as a fallback for key ("" for a batch).
// Single and batch reads share it.
func (c *Cache[V]) epochGate(ctx context.Context, key string) error {
	if c.epochUsable() {
		return nil
	}
	err := c.errEpoch()
	c.ctr.l2Errors.Add(1)
	c.fallback(ctx, key, ReasonEpochUnknown, err)
	return err
}

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

// missScore tells whether a cache's L2 reads miss often: it rises by
// missScoreMiss per miss and falls by 1 per hit, within [0, 2*missScoreAt],
// so it drifts up past missScoreAt once more than about one read in five
// misses, and the first round trip of a miss is then the get-or-lease
// pipeline (SET NX, GETRANGE). That pipeline answers a hit too, for
// about 8 µs more than a plain GETRANGE (measured with a PTTL in it too,
// until 2026-12-06); a plain read that misses costs a
// whole second round trip (about 55 µs) before the lease: the pipeline pays
// from about one miss in eight reads (BenchmarkL2Hit with either first
// step, benchmarks/RESULTS.md). Until 2026-12-06 the weights were swapped
// (+1 a miss, -4 a hit), so only reads that missed more than four times in
// five leased first: a cold Zipf pass, 12% of its L2 reads hits, made a
// plain read before a fifth of its leases.
type missScore struct{ n atomic.Int32 }

const (
	missScoreAt   = 32
	missScoreMiss = 4
)

func (m *missScore) leaseFirst() bool { return m.n.Load() >= missScoreAt }

// note records one L2 read. Concurrent updates may be lost: the score is a
// hint.
func (m *missScore) note(miss bool) {
	n := m.n.Load()
	if miss {
		n = min(n+missScoreMiss, 2*missScoreAt)
	} else {
		n = max(n-1, 0)
	}
	m.n.Store(n)
}
