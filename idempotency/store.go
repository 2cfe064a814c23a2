package idempotency

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/ristretto"
	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/redisconf"
)

// Store keeps idempotency records in Redis: one per (scope, key), each in a
// hash slot of its own, so it works on a single Redis, Sentinel and
// Cluster. It is safe for concurrent use. Create it with [New]; [Close]
// it when done.
type Store struct {
	o   Options
	rdb redis.UniversalClient
	l1  *ristretto.Cache[*replay] // nil with Options.NoL1
	c   *completer

	// offsetMS moves the scripts' clock forward, in milliseconds: tests use
	// it to expire leases without waiting. Always 0 outside tests.
	offsetMS atomic.Int64

	closeOnce sync.Once
	closed    atomic.Bool
}

// replay is an L1 copy of a completed record.
type replay struct {
	fp      string
	res     *Result
	expires int64 // unix nanos, local clock: when the record's TTL ends
}

// New checks o and Redis and returns a Store.
//
// New fails with an error wrapping [ErrEvictingRedis] unless every Redis
// master has maxmemory-policy noeviction (see Options.AllowEvictingRedis),
// and with one wrapping [ErrUnavailable] if Redis cannot be asked.
func New(ctx context.Context, o *Options) (*Store, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := redisconf.Startup(ctx, opts.Client, opts.AllowEvictingRedis, opts.Timeout, ErrInvalidOptions, ErrEvictingRedis, ErrUnavailable,
		"a record evicted while its request runs, or after it completed, lets a retry run the request twice"); err != nil {
		return nil, err
	}
	s := &Store{o: opts, rdb: opts.Client}
	if !opts.NoL1 {
		s.l1, err = ristretto.New[*replay](&ristretto.Options{MaxCost: opts.L1MaxBytes, AvgCost: 4096, UseTTL: true})
		if err != nil {
			return nil, fmt.Errorf("idempotency: L1: %w", err)
		}
	}
	s.c = newCompleter(s)
	return s, nil
}

// Must is like [New] but panics on an error.
func Must(ctx context.Context, o *Options) *Store {
	s, err := New(ctx, o)
	if err != nil {
		panic(err)
	}
	return s
}

// Close stops the background completer (completions still queued are
// dropped, and reported as EventCompleteDropped) and drops the L1 copies.
// It returns once the Store's goroutines have exited, and is idempotent.
// It does not close the Redis client.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.c.close()
		if s.l1 != nil {
			s.l1.Close()
		}
	})
	return nil
}

// Retention returns Options.Retention.
func (s *Store) Retention() time.Duration { return s.o.Retention }

// Outcome says what [Store.Begin] found.
type Outcome uint8

// The outcomes of Begin.
const (
	// OutcomeAcquired: the key is new; run the request.
	OutcomeAcquired Outcome = iota + 1
	// OutcomeTakenOver: an earlier attempt's lease expired (its process
	// died, hung, or lost Redis for longer than the lease); run the request
	// again, knowing that the earlier attempt may have done part or all of
	// the work (see Attempt.RecoveryPoint and Attempt.DerivedKey).
	OutcomeTakenOver
	// OutcomeRetry: the earlier attempt failed (Attempt.Fail: an error,
	// a panic, a response not to replay); run the request again.
	OutcomeRetry
	// OutcomeInFlight: another attempt holds a live lease; come back after
	// Begun.RetryAfter.
	OutcomeInFlight
	// OutcomeCompleted: the request completed; Begun.Result is its result.
	OutcomeCompleted
)

// String returns the outcome's name in snake case.
func (o Outcome) String() string {
	switch o {
	case OutcomeAcquired:
		return "acquired"
	case OutcomeTakenOver:
		return "taken_over"
	case OutcomeRetry:
		return "retry"
	case OutcomeInFlight:
		return "in_flight"
	case OutcomeCompleted:
		return "completed"
	}
	return "unknown"
}

// Begun is what [Store.Begin] found or started.
type Begun struct {
	Outcome Outcome
	// Attempt is set for OutcomeAcquired, OutcomeTakenOver and
	// OutcomeRetry: this caller now owns the record and must end the
	// attempt with Complete or Fail (or let the lease expire).
	Attempt *Attempt
	// Result is set for OutcomeCompleted. It is shared: do not modify it.
	Result *Result
	// FromL1 reports that Result came from this instance's copy, without a
	// round trip.
	FromL1 bool
	// RetryAfter is set for OutcomeInFlight: the time left on the live
	// lease, on Redis's clock.
	RetryAfter time.Duration
}

// Begin looks up the record of (scope, key) and, when the request should
// run, starts an attempt: in one atomic step on Redis it creates the
// record, takes over an expired lease or follows a failed attempt, or
// reports that the request is in flight or completed.
//
// fingerprint identifies the request's content (the middleware hashes the
// method, path, query and body); a record first written with another
// fingerprint gives [ErrMismatch]. scope separates keys of different
// callers: use the authenticated user or client, so that one caller can
// neither replay nor block another's requests.
//
// Errors: ErrMismatch, ErrInvalidKey, ErrCorrupt, ErrClosed, and errors
// wrapping ErrUnavailable (fail closed) or the context's error. An error
// that also wraps [ErrCompletionPending] means the request is done and its
// result not recorded yet: never run it (do not fail open on it).
func (s *Store) Begin(ctx context.Context, scope, key string, fingerprint []byte) (Begun, error) {
	if s.closed.Load() {
		return Begun{}, ErrClosed
	}
	if err := checkKey(key); err != nil {
		return Begun{}, err
	}
	id := s.recordID(scope, key)
	fp := fingerprintHex(fingerprint)
	if s.l1 != nil {
		if rp, ok := s.l1.Get(id.key); ok && time.Now().UnixNano() < rp.expires {
			if rp.fp != fp {
				s.event(ctx, Event{Kind: EventMismatch, Record: id.short})
				return Begun{}, ErrMismatch
			}
			s.event(ctx, Event{Kind: EventReplayed, Record: id.short, FromL1: true})
			return Begun{Outcome: OutcomeCompleted, Result: rp.res, FromL1: true}, nil
		}
	}
	if err := s.allow(); err != nil {
		if s.c.holds(id.key) {
			// The breaker refuses, and this instance holds the request's
			// unrecorded completion: the request is done, and a FailOpen
			// route must not run it again.
			err = fmt.Errorf("%w: %w", ErrCompletionPending, err)
		}
		s.event(ctx, Event{Kind: EventUnavailable, Record: id.short, Err: err})
		return Begun{}, err
	}
	pc, waited := s.c.take(ctx, id.key)
	if pc != nil {
		// This instance finished the request and could not record it: record
		// it now, before the request can be taken over and run again. If it
		// still cannot, the request must not begin (it would take the
		// request over and run it again): fail closed, and not open either
		// (ErrCompletionPending: the middleware's FailOpen would run it).
		recorded, err := s.recordTaken(ctx, pc)
		if err != nil {
			s.report(ctx, err)
			if ctx.Err() != nil {
				// The caller gave up: its context's error alone (err may
				// wrap ErrUnavailable, on which a FailOpen route would run
				// the request).
				return Begun{}, fmt.Errorf("idempotency: %w", context.Cause(ctx))
			}
			s.event(ctx, Event{Kind: EventUnavailable, Record: id.short, Err: err})
			return Begun{}, fmt.Errorf("%w: %w", ErrCompletionPending, err)
		}
		if recorded {
			// Recorded now: the request's result is known here, and the
			// begin script's round trip (which could fail, and fail open)
			// has nothing to add. Redis answered: the breaker hears it
			// (this call may have been a half-open breaker's probe).
			s.report(ctx, nil)
			if pc.a.fp != fp {
				s.event(ctx, Event{Kind: EventMismatch, Record: id.short})
				return Begun{}, ErrMismatch
			}
			s.event(ctx, Event{Kind: EventReplayed, Record: id.short, Fence: pc.a.Fence})
			return Begun{Outcome: OutcomeCompleted, Result: pc.res}, nil
		}
	}
	owner := newOwner()
	t0 := time.Now()
	v, err := s.run(ctx, beginScript, id.key, fp, owner, ms(s.o.Lease), ms(s.o.Retention), s.offsetMS.Load())
	s.report(ctx, err)
	d := time.Since(t0)
	if err != nil {
		if ctx.Err() == nil { // not the caller's own cancellation
			if waited || pc != nil || s.c.holds(id.key) {
				// This instance tried the request's completion just now
				// (recorded, or found another attempt's): it may be done,
				// and a FailOpen route must not run it again.
				err = fmt.Errorf("%w: %w", ErrCompletionPending, err)
			}
			s.event(ctx, Event{Kind: EventUnavailable, Record: id.short, Err: err, Duration: d})
		}
		return Begun{}, err
	}
	rep, err := parseBegin(v)
	if err != nil {
		s.event(ctx, Event{Kind: EventCorrupt, Record: id.short, Err: err, Duration: d})
		return Begun{}, err
	}
	switch rep.outcome {
	case "corrupt":
		s.event(ctx, Event{Kind: EventCorrupt, Record: id.short, Err: ErrCorrupt, Duration: d})
		return Begun{}, ErrCorrupt
	case "mismatch":
		s.event(ctx, Event{Kind: EventMismatch, Record: id.short, Duration: d})
		return Begun{}, ErrMismatch
	case "inflight":
		s.event(ctx, Event{Kind: EventInFlight, Record: id.short, Duration: d})
		return Begun{Outcome: OutcomeInFlight, RetryAfter: time.Duration(rep.leftMS) * time.Millisecond}, nil
	case "completed":
		res, err := s.decodeResult(rep.result)
		if err != nil {
			s.event(ctx, Event{Kind: EventCorrupt, Record: id.short, Err: err, Duration: d})
			return Begun{}, err
		}
		s.remember(id.key, fp, res, time.Duration(rep.leftMS)*time.Millisecond)
		s.event(ctx, Event{Kind: EventReplayed, Record: id.short, Fence: rep.fence, Duration: d})
		return Begun{Outcome: OutcomeCompleted, Result: res}, nil
	}
	a := &Attempt{
		s: s, id: id, fp: fp, owner: owner,
		Fence: rep.fence, Number: rep.number, RecoveryPoint: rep.point,
	}
	out, kind := OutcomeAcquired, EventAcquired
	switch rep.outcome {
	case "takeover":
		out, kind = OutcomeTakenOver, EventTakenOver
		a.TakenOver = true
	case "retry":
		out = OutcomeRetry
	case "acquired":
	default:
		err := fmt.Errorf("%w: unexpected outcome %q", ErrCorrupt, rep.outcome)
		s.event(ctx, Event{Kind: EventCorrupt, Record: id.short, Err: err, Duration: d})
		return Begun{}, err
	}
	s.event(ctx, Event{Kind: kind, Record: id.short, Fence: rep.fence, Duration: d})
	return Begun{Outcome: out, Attempt: a}, nil
}

// RecordState is the state of a record, as [Store.Inspect] reports it.
type RecordState uint8

// The record states.
const (
	// StateNone: there is no record (never used, or past its retention).
	StateNone RecordState = iota
	// StateRunning: an attempt holds the record (its lease may have run out).
	StateRunning
	// StateCompleted: the result is recorded.
	StateCompleted
	// StateFailed: the last attempt failed; the next request runs.
	StateFailed
)

// String returns "none", "running", "completed" or "failed".
func (s RecordState) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateRunning:
		return "running"
	case StateCompleted:
		return "completed"
	case StateFailed:
		return "failed"
	}
	return "unknown"
}

// RecordInfo describes a record without its result.
type RecordInfo struct {
	State RecordState
	// Fence and Attempts are the current (or last) attempt's fence and
	// number.
	Fence    int64
	Attempts int
	// RecoveryPoint is the last recovery point recorded.
	RecoveryPoint string
	// LeaseLeft is what is left of the lease (StateRunning), on Redis's clock.
	LeaseLeft time.Duration
	// TTL is how long Redis keeps the record.
	TTL time.Duration
}

// Inspect reads the record of (scope, key) from Redis, for operators and
// tests. It changes nothing.
func (s *Store) Inspect(ctx context.Context, scope, key string) (RecordInfo, error) {
	if s.closed.Load() {
		return RecordInfo{}, ErrClosed
	}
	if err := checkKey(key); err != nil {
		return RecordInfo{}, err
	}
	id := s.recordID(scope, key)
	v, err := s.run(ctx, inspectScript, id.key, s.offsetMS.Load())
	if err != nil {
		return RecordInfo{}, err
	}
	a, ok := v.([]any)
	if !ok || len(a) != 6 {
		return RecordInfo{}, fmt.Errorf("%w: inspect reply %T", ErrCorrupt, v)
	}
	st, _ := a[0].(string)
	fence, _ := a[1].(int64)
	n, _ := a[2].(int64)
	rp, _ := a[3].(string)
	left, _ := a[4].(int64)
	ttl, _ := a[5].(int64)
	info := RecordInfo{Fence: fence, Attempts: int(n), RecoveryPoint: rp,
		LeaseLeft: time.Duration(left) * time.Millisecond, TTL: time.Duration(ttl) * time.Millisecond}
	switch st {
	case "none":
		info.State = StateNone
	case "r":
		info.State = StateRunning
	case "c":
		info.State = StateCompleted
	case "f":
		info.State = StateFailed
	default:
		return RecordInfo{}, ErrCorrupt
	}
	return info, nil
}

// recordID names one record.
type recordID struct {
	key   string   // the Redis key: "<ns>:{<32 hex>}"
	short string   // 16 hex digits, for telemetry
	hash  [32]byte // the full hash, for DerivedKey
}

// recordID hashes (scope, key), length-prefixed so that no two pairs
// collide, with HMAC-SHA256 under Options.Secret if set.
func (s *Store) recordID(scope, key string) recordID {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(scope)))
	var h [32]byte
	if len(s.o.Secret) > 0 {
		m := hmac.New(sha256.New, s.o.Secret)
		m.Write(n[:])
		m.Write([]byte(scope))
		m.Write([]byte(key))
		copy(h[:], m.Sum(nil))
	} else {
		d := sha256.New()
		d.Write(n[:])
		d.Write([]byte(scope))
		d.Write([]byte(key))
		copy(h[:], d.Sum(nil))
	}
	x := hex.EncodeToString(h[:16])
	return recordID{key: s.o.Namespace + ":{" + x + "}", short: x[:16], hash: h}
}

// checkKey refuses keys that are empty, longer than MaxKeyBytes or hold
// anything but printable ASCII (what an RFC 8941 string may carry).
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: length %d, want 1 to %d", ErrInvalidKey, len(key), MaxKeyBytes)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return fmt.Errorf("%w: byte %#02x at %d", ErrInvalidKey, key[i], i)
		}
	}
	return nil
}

func fingerprintHex(fp []byte) string {
	h := sha256.Sum256(fp)
	return hex.EncodeToString(h[:])
}

func newOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// remember keeps a completed result in L1 until the record's TTL ends.
func (s *Store) remember(key, fp string, res *Result, ttl time.Duration) {
	if s.l1 == nil || ttl <= 0 {
		return
	}
	s.l1.Set(key, &replay{fp: fp, res: res, expires: time.Now().Add(ttl).UnixNano()}, res.size()+int64(len(key)), ttl)
}

// recordTaken tries to record pc, a completion Begin took, and returns
// nil once it reached a final outcome (see completer.settle), with
// recorded set if that outcome is pc's result in Redis, or the try's
// error. pc is settled whatever happens, even if an observer panics while
// its outcome is reported: its record must not stay busy.
func (s *Store) recordTaken(ctx context.Context, pc *pendingCompletion) (recorded bool, err error) {
	settled := false
	defer func() {
		if !settled {
			s.c.settle(ctx, pc)
		}
	}()
	err = s.completeOnce(ctx, pc)
	settled = true
	if s.c.settle(ctx, pc) {
		return err == nil, nil
	}
	if err == nil { // not final, yet no error: cannot be, but fail closed
		err = ErrUnavailable
	}
	return false, err
}

// allow asks the breaker whether a request may call Redis.
func (s *Store) allow() error {
	if b := s.o.Breaker; b != nil && !b.Allow() {
		return fmt.Errorf("%w: circuit breaker open", ErrUnavailable)
	}
	return nil
}

// report tells the breaker how a request's call went, and wakes the
// completer when Redis answered.
func (s *Store) report(ctx context.Context, err error) {
	var re redis.Error
	b := s.o.Breaker
	switch {
	case err == nil, errors.As(err, &re):
		if b != nil {
			b.Success() // Redis answered, perhaps with an error (OOM, READONLY, ...)
		}
		s.c.nudge()
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about Redis. If the call
		// was a half-open breaker's probe, the next call probes at once.
		breaker.Forget(b)
	case b != nil:
		b.Failure()
	}
}

// run runs a script on the record key under Options.Timeout. Failures to
// reach Redis wrap ErrUnavailable; the caller's own cancellation is
// returned as the context's error.
func (s *Store) run(ctx context.Context, sc *redis.Script, key string, args ...any) (any, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	v, err := sc.Run(cctx, s.rdb, []string{key}, args...).Result()
	cancel()
	if err == nil {
		return v, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("idempotency: %w", context.Cause(ctx))
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (s *Store) event(ctx context.Context, e Event) {
	e.Store = s.o.Name
	s.o.Observer.Event(ctx, e)
	if s.o.OnEvent != nil {
		s.o.OnEvent(e)
	}
}

// beginReply is the parsed reply of beginScript.
type beginReply struct {
	outcome string
	fence   int64
	leftMS  int64
	number  int
	point   string
	result  []byte
}

func parseBegin(v any) (beginReply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 6 {
		return beginReply{}, fmt.Errorf("%w: begin reply %T", ErrCorrupt, v)
	}
	var r beginReply
	r.outcome, _ = a[0].(string)
	r.fence, _ = a[1].(int64)
	r.leftMS, _ = a[2].(int64)
	n, _ := a[3].(int64)
	r.number = int(n)
	r.point, _ = a[4].(string)
	if res, _ := a[5].(string); res != "" {
		r.result = []byte(res)
	}
	return r, nil
}
