package idempotency

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrDeferred is wrapped, together with [ErrUnavailable], by the error of
// [Attempt.Complete] when Redis could not be reached and the result was
// queued for background retries. The work is done and its result is known:
// answer the caller with it.
var ErrDeferred = errors.New("idempotency: completion deferred")

// Attempt is one run of a request: the owner of its record until it
// completes, fails, or its lease expires and another request takes it
// over. It is safe for concurrent use.
type Attempt struct {
	s     *Store
	id    recordID
	fp    string
	owner string

	// Fence grows with every attempt of a record: it is Redis's clock in
	// milliseconds when the attempt began, or one more than the previous
	// attempt's fence if that is larger. Write it with the request's
	// effects (a column checked by "UPDATE ... WHERE fence < $fence") so
	// that an attempt that was taken over cannot overwrite the effects of
	// the one that took over.
	Fence int64
	// Number is the attempt's number: 1 for the first.
	Number int
	// TakenOver reports that an earlier attempt's lease expired: it may
	// have done any part of the work, and may even still be running
	// (see Fence).
	TakenOver bool
	// RecoveryPoint is the last recovery point an earlier attempt recorded
	// with Checkpoint ("" if none): where to resume.
	RecoveryPoint string

	mu    sync.Mutex
	ended bool // Complete or Fail returned (guarded by mu)
}

type attemptKey struct{}

// WithAttempt returns a context that carries a.
func WithAttempt(ctx context.Context, a *Attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

// FromContext returns the attempt the middleware (or [Store.Do]) runs the
// handler under.
func FromContext(ctx context.Context) (*Attempt, bool) {
	a, ok := ctx.Value(attemptKey{}).(*Attempt)
	return a, ok
}

// DerivedKey returns a key derived from the record and name, the same in
// every attempt (and on every instance with the same Options.Secret), and
// from which the client's key cannot be recovered. Give it to a downstream
// service that deduplicates by key, such as a payment provider's
// Idempotency-Key: an attempt that takes over then gets the earlier
// attempt's charge back instead of making a second one. Use one name per
// downstream call.
func (a *Attempt) DerivedKey(name string) string {
	m := hmac.New(sha256.New, a.id.hash[:])
	m.Write([]byte("tiercache/idempotency derived key\x00"))
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// Record returns the record's short hash, as in [Event.Record].
func (a *Attempt) Record() string { return a.id.short }

// Heartbeat extends the lease to Options.Lease from now (on Redis's clock).
// It returns [ErrLeaseLost] if a newer attempt took the record over, and an
// error wrapping [ErrUnavailable] if Redis cannot be reached. If the record
// is gone (Redis restarted empty), Heartbeat writes it again, so that a
// retry still finds the request in flight (EventRecreated).
func (a *Attempt) Heartbeat(ctx context.Context) error {
	return a.heartbeat(ctx, false, "")
}

// Checkpoint records a recovery point, such as "charged", and extends the
// lease: an attempt that takes over finds it in [Attempt.RecoveryPoint]
// and can resume from there instead of starting again (brandur's recovery
// points). Errors as for Heartbeat. It runs on ctx's values but not its
// cancellation (within Options.Timeout): a recovery point records work
// that is done, whether or not the client still waits (a request's
// context ends when its client goes away, and the retry must then resume
// after the charge, not before it).
func (a *Attempt) Checkpoint(ctx context.Context, point string) error {
	return a.heartbeat(context.WithoutCancel(ctx), true, point)
}

func (a *Attempt) heartbeat(ctx context.Context, setPoint bool, point string) error {
	s := a.s
	set := "0"
	if setPoint {
		set = "1"
	}
	t0 := time.Now()
	v, err := s.run(ctx, heartbeatScript, a.id.key, a.owner, a.Fence, ms(s.o.Lease), ms(s.o.Retention),
		s.offsetMS.Load(), a.fp, a.Number, set, point)
	if err != nil {
		return err
	}
	out := replyOutcome(v)
	switch out {
	case "ok", "done":
		return nil
	case "reasserted":
		s.event(ctx, Event{Kind: EventRecreated, Record: a.id.short, Fence: a.Fence, Duration: time.Since(t0)})
		return nil
	case "stale":
		s.event(ctx, Event{Kind: EventLeaseLost, Record: a.id.short, Fence: a.Fence, Err: ErrLeaseLost})
		return ErrLeaseLost
	}
	s.event(ctx, Event{Kind: EventCorrupt, Record: a.id.short, Fence: a.Fence, Err: ErrCorrupt})
	return fmt.Errorf("%w: heartbeat outcome %q", ErrCorrupt, out)
}

// Complete records r as the request's result, for every retry within
// Options.Retention to get back. It succeeds only while this attempt holds
// the record, even if its lease has run out, as long as no newer attempt
// took it over; it never writes over a completed record. It returns
// [ErrLeaseLost] when a newer attempt holds the record.
//
// If Redis cannot be reached, the result is queued and retried in the
// background until Options.CompleteDeadline (EventCompleteDeferred), and
// Complete returns an error wrapping both [ErrDeferred] and
// [ErrUnavailable]. A record lost with a Redis restart is written again,
// completed (EventRecreated).
//
// ctx bounds the first try only: if it ends first (whether the script ran
// or not), the result is queued as for an unreachable Redis, and the error
// wraps ErrDeferred and the context's error. The request is done either
// way: dropped, its result would let a retry run it again.
func (a *Attempt) Complete(ctx context.Context, r Result) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		return fmt.Errorf("idempotency: attempt already ended")
	}
	enc, err := a.s.encodeResult(r)
	if err != nil {
		return err
	}
	pc := &pendingCompletion{a: a, enc: enc, res: cloneResult(r)}
	err = a.s.completeOnce(ctx, pc)
	if errors.Is(err, ErrUnavailable) || err != nil && ctx.Err() != nil && !errors.Is(err, ErrLeaseLost) && !errors.Is(err, ErrCorrupt) {
		if a.s.c.add(ctx, pc) {
			a.ended = true
			return fmt.Errorf("%w: %w", ErrDeferred, err)
		}
		return err
	}
	if err == nil || errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrCorrupt) {
		a.ended = true
	}
	return err
}

// completeOnce runs the completion script once.
func (s *Store) completeOnce(ctx context.Context, pc *pendingCompletion) error {
	a := pc.a
	t0 := time.Now()
	v, err := s.run(ctx, completeScript, a.id.key, a.owner, a.Fence, pc.enc, ms(s.o.Retention),
		s.offsetMS.Load(), a.fp, a.Number)
	if err != nil {
		return err
	}
	d := time.Since(t0)
	a2, _ := v.([]any)
	var ttl int64
	if len(a2) == 2 {
		ttl, _ = a2[1].(int64)
	}
	out := replyOutcome(v)
	s.c.release(pc) // a final outcome: Pending drops before it is reported
	switch out {
	case "ok", "recreated":
		s.remember(a.id.key, a.fp, pc.res, time.Duration(ttl)*time.Millisecond)
		if out == "recreated" {
			s.event(ctx, Event{Kind: EventRecreated, Record: a.id.short, Fence: a.Fence, Duration: d})
		}
		s.event(ctx, Event{Kind: EventCompleted, Record: a.id.short, Fence: a.Fence, Duration: d})
		return nil
	case "stale":
		s.event(ctx, Event{Kind: EventLeaseLost, Record: a.id.short, Fence: a.Fence, Err: ErrLeaseLost, Duration: d})
		return ErrLeaseLost
	default:
		s.event(ctx, Event{Kind: EventCorrupt, Record: a.id.short, Fence: a.Fence, Err: ErrCorrupt, Duration: d})
		return fmt.Errorf("%w: complete outcome %q", ErrCorrupt, out)
	}
}

// Fail ends the attempt without a result: the record keeps the request's
// fingerprint and the next request with the key runs at once, with a larger
// fence (OutcomeRetry). Use it when the work did not happen, or when a
// retry should run it again (after a transient error). It returns
// [ErrLeaseLost] when a newer attempt holds the record, and nil when the
// record is gone.
//
// ctx: as for Complete.
func (a *Attempt) Fail(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		return nil
	}
	s := a.s
	t0 := time.Now()
	v, err := s.run(ctx, failScript, a.id.key, a.owner, a.Fence, ms(s.o.Retention))
	if err != nil {
		return err
	}
	a.ended = true
	d := time.Since(t0)
	switch out, _ := v.(string); out {
	case "ok", "gone", "done":
		s.event(ctx, Event{Kind: EventFailed, Record: a.id.short, Fence: a.Fence, Duration: d})
		return nil
	case "stale":
		s.event(ctx, Event{Kind: EventLeaseLost, Record: a.id.short, Fence: a.Fence, Err: ErrLeaseLost, Duration: d})
		return ErrLeaseLost
	default:
		s.event(ctx, Event{Kind: EventCorrupt, Record: a.id.short, Fence: a.Fence, Err: ErrCorrupt, Duration: d})
		return fmt.Errorf("%w: fail outcome %q", ErrCorrupt, out)
	}
}

// Keep heartbeats the lease every Options.Heartbeat until stop is called,
// and returns a context derived from ctx (carrying the attempt, see
// [FromContext]) that is cancelled with the cause [ErrLeaseLost] as soon as
// a heartbeat finds a newer attempt in its place: the work should stop, its
// remaining effects would be fenced out. The heartbeats go on when ctx is
// cancelled (a client that left does not stop work already under way from
// holding its lease), and while Redis cannot be reached (the lease may then
// run out; see the package documentation). stop ends them, without
// waiting for a heartbeat in flight, and returns once the goroutine has
// exited; call it before Complete or Fail.
func (a *Attempt) Keep(ctx context.Context) (kept context.Context, stop func()) {
	kctx, cancel := context.WithCancelCause(WithAttempt(ctx, a))
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(a.s.o.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if err := a.Heartbeat(hctx); errors.Is(err, ErrLeaseLost) {
					cancel(ErrLeaseLost)
					return
				}
			}
		}
	}()
	var once sync.Once
	return kctx, func() {
		once.Do(func() {
			hcancel()
			<-done
			cancel(nil)
		})
	}
}

// Do runs fn at most once per (scope, key) across every instance that
// shares the Store's Redis, for as long as the record is kept, and returns
// its result; a later call returns the recorded result with replayed set.
// While another call runs it returns an [*InFlightError]. fn runs under
// [Attempt.Keep]; an error from fn (or a panic) ends the attempt with Fail
// and is returned, so that the next call runs fn again.
//
// Errors of Begin are returned as they are.
func (s *Store) Do(ctx context.Context, scope, key string, fingerprint []byte,
	fn func(ctx context.Context, a *Attempt) (Result, error)) (res *Result, replayed bool, err error) {
	b, err := s.Begin(ctx, scope, key, fingerprint)
	if err != nil {
		return nil, false, err
	}
	switch b.Outcome {
	case OutcomeCompleted:
		return b.Result, true, nil
	case OutcomeInFlight:
		return nil, false, &InFlightError{RetryAfter: b.RetryAfter}
	}
	a := b.Attempt
	kctx, stop := a.Keep(ctx)
	ok := false
	defer func() {
		if !ok { // fn panicked
			stop()
			_ = a.Fail(context.WithoutCancel(ctx))
		}
	}()
	r, ferr := fn(kctx, a)
	ok = true
	stop()
	if ferr != nil {
		_ = a.Fail(context.WithoutCancel(ctx))
		return nil, false, ferr
	}
	if err := a.Complete(context.WithoutCancel(ctx), r); err != nil && !errors.Is(err, ErrDeferred) {
		return nil, false, err
	}
	return &r, false, nil
}

func replyOutcome(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		if len(x) > 0 {
			s, _ := x[0].(string)
			return s
		}
	}
	return ""
}

func cloneResult(r Result) *Result {
	c := &Result{Status: r.Status, Body: append([]byte(nil), r.Body...), Header: r.Header.Clone()}
	return c
}
