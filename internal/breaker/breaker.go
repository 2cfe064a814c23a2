package breaker

import (
	"sync/atomic"
	"time"
)

// State is the state of a [Breaker].
type State int32

// The states. Their values are stable (tier.BreakerState has the same).
const (
	// Closed: calls go ahead.
	Closed State = iota
	// Open: calls are skipped until the cool-down ends.
	Open
	// HalfOpen: one probe call is let through; its outcome closes or
	// reopens the breaker.
	HalfOpen
)

// String returns "closed", "open" or "half_open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "unknown"
}

// Defaults of [Options].
const (
	DefaultFailures = 5
	DefaultCooldown = 5 * time.Second
)

// Options configures a [Breaker]. New copies it.
type Options struct {
	// Failures is how many consecutive failures open the breaker.
	// Default: 5.
	Failures int
	// Cooldown is how long the breaker stays open before it lets one probe
	// through (and how long a probe that never reports holds the half-open
	// state). Default: 5 seconds.
	Cooldown time.Duration
	// Now returns the time in unix nanoseconds. Default: the system clock.
	Now func() int64
	// OnChange, if not nil, is called after each change of state, on the
	// goroutine that made it. It must not block or call the Breaker.
	OnChange func(from, to State)
}

// Breaker is a consecutive-failures circuit breaker. It is safe for
// concurrent use; in the closed state Allow costs one atomic load. Create
// it with [New].
type Breaker struct {
	threshold int32
	cooldown  int64
	now       func() int64
	onChange  func(from, to State)

	state    atomic.Int32
	failures atomic.Int32 // consecutive failures while closed
	since    atomic.Int64 // unix nanos: when it opened, or when the probe began
	opens    atomic.Uint64
}

// New returns a closed Breaker configured by o.
func New(o Options) *Breaker {
	if o.Failures <= 0 {
		o.Failures = DefaultFailures
	}
	if o.Cooldown <= 0 {
		o.Cooldown = DefaultCooldown
	}
	if o.Now == nil {
		o.Now = func() int64 { return time.Now().UnixNano() }
	}
	if o.OnChange == nil {
		o.OnChange = func(State, State) {}
	}
	return &Breaker{threshold: int32(min(o.Failures, 1<<30)), cooldown: int64(o.Cooldown), now: o.Now, onChange: o.OnChange}
}

// State returns the breaker's state now.
func (b *Breaker) State() State { return State(b.state.Load()) }

// Opens returns how many times the breaker opened.
func (b *Breaker) Opens() uint64 { return b.opens.Load() }

// Allow reports whether a call may go ahead. In the open state it is
// false until the cool-down ends; then one call (the probe) is allowed and
// the breaker is half-open until the probe reports (or, if it never does,
// until another cool-down has passed and another probe is allowed).
func (b *Breaker) Allow() bool {
	switch State(b.state.Load()) {
	case Closed:
		return true
	case Open:
		if b.now()-b.since.Load() < b.cooldown {
			return false
		}
		if b.state.CompareAndSwap(int32(Open), int32(HalfOpen)) {
			b.since.Store(b.now())
			b.onChange(Open, HalfOpen)
			return true
		}
		return false
	default: // half-open: a probe is out; let another go if it never reported.
		since := b.since.Load()
		return b.now()-since >= b.cooldown && b.since.CompareAndSwap(since, b.now())
	}
}

// Success records a call that worked: the breaker closes.
func (b *Breaker) Success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if s := State(b.state.Load()); s != Closed {
		if b.state.CompareAndSwap(int32(s), int32(Closed)) {
			b.onChange(s, Closed)
		}
	}
}

// Unused records a call that Allow let go but that ended without reaching
// the service (it neither worked nor failed). If the breaker is half-open,
// that call may have been the probe, whose report will never come: the
// next Allow lets another probe go at once instead of after a cool-down.
//
// NOTE: if the real probe fails while Unused runs, the breaker may reopen
// with its cool-down already over: one more probe then goes at once. That
// costs one call to a failing service, never a wrong state.
func (b *Breaker) Unused() {
	since := b.since.Load()
	if State(b.state.Load()) == HalfOpen {
		b.since.CompareAndSwap(since, b.now()-b.cooldown)
	}
}

// Failure records a call that failed: Options.Failures in a row open a
// closed breaker, and a failed probe opens a half-open one again.
func (b *Breaker) Failure() {
	switch s := State(b.state.Load()); s {
	case Closed:
		if b.failures.Add(1) >= b.threshold {
			b.open(Closed)
		}
	case HalfOpen:
		b.open(HalfOpen)
	}
}

// open moves the breaker from state from to open. since is stored before
// the state changes, so no reader sees an open breaker with an old since.
func (b *Breaker) open(from State) {
	b.since.Store(b.now())
	if !b.state.CompareAndSwap(int32(from), int32(Open)) {
		return
	}
	b.failures.Store(0)
	b.opens.Add(1)
	b.onChange(from, Open)
}
