package ratelimit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Algorithm is how a [Policy] counts.
type Algorithm uint8

// The algorithms. Each has a different price and a different guarantee;
// the package documentation compares them.
const (
	// SlidingLog keeps one entry per admitted unit (a Redis sorted set
	// scored by Redis's time) and admits a call only if every window of
	// the policy, measured back from the call's own instant, has room: "N
	// per window" holds exactly in every rolling window. Memory: about 40
	// bytes per admitted unit still inside the longest window, so it is
	// meant for small quotas (security quotas, at most MaxSlidingLogLimit
	// per window).
	SlidingLog Algorithm = iota + 1
	// SlidingWindow is the sliding-window counter: two fixed-window counts
	// per window (the current one and the one before) and an estimate
	// that weighs the previous count by how much of it the rolling window
	// still covers. Constant memory per actor. It is approximate: in a
	// rolling window it admits fewer than 2N, and at most N when arrivals
	// in each fixed window are spread evenly; it overshoots only when
	// the previous fixed window's traffic came in its last moments.
	SlidingWindow
	// GCRA is the generic cell rate algorithm (a leaky bucket kept as one
	// timestamp per window): it smooths traffic to N per window with a
	// burst of Limit.Burst at once. It is not "N per window": with the
	// default burst (N) a fresh actor gets N at once and then one every
	// window/N, so a rolling window can see up to 2N-1.
	GCRA
)

// String returns "sliding_log", "sliding_window" or "gcra".
func (a Algorithm) String() string {
	switch a {
	case SlidingLog:
		return "sliding_log"
	case SlidingWindow:
		return "sliding_window"
	case GCRA:
		return "gcra"
	}
	return "unknown"
}

// OutageMode is what a [Policy] decides while Redis cannot be reached
// (the call failed or timed out, or the circuit breaker is open). Every
// decision taken this way is counted and reported to the [Observer] as a
// fallback.
type OutageMode uint8

// The outage modes.
const (
	// Local, the default, admits from an in-process limiter that allows
	// this instance at most Policy.LocalShare of each window's quota (an
	// exact sliding log on the local clock). It is warm: it also records
	// the calls Redis admitted through this instance, so an actor that
	// used its share just before the outage gets nothing more.
	Local OutageMode = iota
	// FailClosed denies every call. For quotas whose breach costs more
	// than a refused request (role changes, forced verifications).
	FailClosed
	// FailOpen admits every call. Only for policies that merely protect
	// capacity, and only when asked: it is never a default.
	FailOpen
)

// String returns "local", "fail_closed" or "fail_open".
func (m OutageMode) String() string {
	switch m {
	case Local:
		return "local"
	case FailClosed:
		return "fail_closed"
	case FailOpen:
		return "fail_open"
	}
	return "unknown"
}

// Limit is one quota of a [Policy]: N units per window.
type Limit struct {
	// N is how many units the window admits. Required, at least 1.
	N int
	// Per is the window. Required, at least 1 ms; at most 30 days.
	Per time.Duration
	// Burst is how many units GCRA admits at once (its bucket size).
	// Only for GCRA. Default: N.
	Burst int
	// Name names the window in the RateLimit-Policy and RateLimit HTTP
	// fields and in Decision.Windows. Default: the policy's name for a
	// policy with one window, "<policy>-<window>" otherwise, the window in
	// seconds ("role_changes-3600s") or, if not whole, milliseconds.
	Name string
}

// Per returns a Limit of n units per d.
func Per(n int, d time.Duration) Limit { return Limit{N: n, Per: d} }

// Policy is a named set of quotas that apply together to each actor.
type Policy struct {
	// Name identifies the policy in keys, telemetry and HTTP fields.
	// Required: letters, digits, '_', '-' and '.', at most 64 bytes.
	Name string
	// Algorithm counts the calls. Required.
	Algorithm Algorithm
	// Limits are the quotas, all checked and consumed in one Redis call:
	// a call is admitted only if every one has room, and then it counts
	// against every one ("5 per hour and 10 per day"). Required, at most
	// MaxWindows.
	Limits []Limit
	// Include names other policies checked and consumed together with
	// this one, in the same atomic step, all or nothing (for example every
	// admin endpoint's policy includes "admin_all"). Included policies
	// must not include others.
	Include []string
	// ConsumeDenied makes denied calls count against the quota too, so an
	// actor that keeps trying stays locked out. Default: false, a denied
	// call consumes nothing. Such a policy skips the L1 denial cache
	// (every attempt has to reach Redis to be counted).
	ConsumeDenied bool
	// Outage is what the policy decides while Redis cannot be reached.
	// Default: Local.
	Outage OutageMode
	// LocalShare is the fraction of each quota that one instance may admit
	// on its own in Local outage mode, in (0, 1]. With K instances behind
	// one Redis, 1/K keeps the fleet within the quota during an outage.
	// Default: 1.
	LocalShare float64
}

// Limits of a [Policy].
const (
	// MaxWindows is the most Limits a policy may have.
	MaxWindows = 8
	// MaxSlidingLogLimit is the largest N of a SlidingLog limit: the log
	// keeps one entry per admitted unit.
	MaxSlidingLogLimit = 100_000
	// maxWindow bounds Limit.Per.
	maxWindow = 30 * 24 * time.Hour
)

// policy is a validated Policy with what the hot path needs precomputed.
// Immutable after New.
type policy struct {
	Policy
	index   int
	maxPer  time.Duration
	names   []string  // per limit: the window's name
	local   []int     // per limit: the local quota, floor(N * LocalShare)
	args    []any     // the script arguments describing this key (see script.go)
	include []*policy // resolved Include
	all     []*policy // this policy, then include: the keys one call touches
	maxCost int       // the largest n every limit of this policy can ever admit

	// Set by resolve, over all:
	callMaxCost int        // the largest n a call can ask for
	nwin        int        // how many windows a call touches
	nargs       int        // the length of their script arguments
	cacheable   bool       // no policy of all is ConsumeDenied
	logs        bool       // some policy of all is a SlidingLog
	outage      OutageMode // the strictest: FailClosed, then Local, then FailOpen
	script      *script    // the script a call runs (see pickScript)
	argv        []any      // its ARGV after n and the member id
	evalsha     [3]any     // "evalsha", the script's SHA1, len(all): boxed once
	single      bool       // script replies with one window: not decideScript
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// compile validates p and precomputes what the hot path needs. Include is
// resolved later, by resolve.
func compile(p Policy, index int) (*policy, error) {
	bad := func(format string, a ...any) (*policy, error) {
		return nil, fmt.Errorf("%w: policy %q: "+format, append([]any{ErrInvalidPolicy, p.Name}, a...)...)
	}
	if !validName(p.Name) {
		return bad("name must be 1 to 64 letters, digits, '_', '-' or '.'")
	}
	switch p.Algorithm {
	case SlidingLog, SlidingWindow, GCRA:
	default:
		return bad("unknown algorithm %d", p.Algorithm)
	}
	if len(p.Limits) == 0 || len(p.Limits) > MaxWindows {
		return bad("needs 1 to %d limits, has %d", MaxWindows, len(p.Limits))
	}
	switch p.Outage {
	case Local, FailClosed, FailOpen:
	default:
		return bad("unknown outage mode %d", p.Outage)
	}
	if p.LocalShare == 0 {
		p.LocalShare = 1
	}
	if math.IsNaN(p.LocalShare) || p.LocalShare <= 0 || p.LocalShare > 1 {
		return bad("LocalShare %v is outside (0, 1]", p.LocalShare)
	}
	p.Limits = append([]Limit(nil), p.Limits...)
	p.Include = append([]string(nil), p.Include...)
	c := &policy{index: index, maxCost: math.MaxInt}
	seen := map[string]bool{}
	for i := range p.Limits {
		l := &p.Limits[i]
		if l.N < 1 {
			return bad("limit %d: N must be at least 1", i)
		}
		if l.Per < time.Millisecond || l.Per > maxWindow {
			return bad("limit %d: window %v is outside [1ms, 30 days]", i, l.Per)
		}
		if p.Algorithm == SlidingLog && l.N > MaxSlidingLogLimit {
			return bad("limit %d: a sliding log keeps one entry per unit; N %d is over %d", i, l.N, MaxSlidingLogLimit)
		}
		if l.Burst < 0 || (l.Burst > 0 && p.Algorithm != GCRA) {
			return bad("limit %d: Burst is for GCRA only, and not negative", i)
		}
		if p.Algorithm == GCRA && l.Burst == 0 {
			l.Burst = l.N
		}
		if l.Name == "" {
			l.Name = p.Name
			if len(p.Limits) > 1 {
				l.Name = p.Name + "-" + label(l.Per)
			}
		}
		if strings.ContainsAny(l.Name, "\"\\") || strings.ContainsFunc(l.Name, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
			return bad("limit %d: name %q must be printable ASCII without '\"' or '\\'", i, l.Name)
		}
		if seen[l.Name] {
			return bad("two limits are named %q", l.Name)
		}
		seen[l.Name] = true
		c.maxPer = max(c.maxPer, l.Per)
		c.names = append(c.names, l.Name)
		c.local = append(c.local, int(math.Floor(float64(l.N)*p.LocalShare+1e-9)))
		capacity := l.N
		if p.Algorithm == GCRA {
			capacity = l.Burst
		}
		c.maxCost = min(c.maxCost, capacity)
	}
	c.Policy = p
	c.args = scriptArgs(c)
	return c, nil
}

// resolve links each policy's Include and builds what depends on it.
func resolve(ps []*policy) error {
	byName := make(map[string]*policy, len(ps))
	for _, p := range ps {
		if byName[p.Name] != nil {
			return fmt.Errorf("%w: two policies are named %q", ErrInvalidPolicy, p.Name)
		}
		byName[p.Name] = p
	}
	for _, p := range ps {
		p.all = []*policy{p}
		for _, name := range p.Include {
			q := byName[name]
			switch {
			case q == nil:
				return fmt.Errorf("%w: policy %q includes unknown policy %q", ErrInvalidPolicy, p.Name, name)
			case q == p:
				return fmt.Errorf("%w: policy %q includes itself", ErrInvalidPolicy, p.Name)
			case len(q.Include) > 0:
				return fmt.Errorf("%w: policy %q includes %q, which includes others", ErrInvalidPolicy, p.Name, name)
			}
			for _, r := range p.all {
				if r == q {
					return fmt.Errorf("%w: policy %q includes %q twice", ErrInvalidPolicy, p.Name, name)
				}
			}
			p.include = append(p.include, q)
			p.all = append(p.all, q)
		}
	}
	for _, p := range ps {
		names := map[string]bool{}
		p.callMaxCost, p.cacheable, p.outage = math.MaxInt, true, FailOpen
		for _, q := range p.all {
			p.callMaxCost = min(p.callMaxCost, q.maxCost)
			p.nwin += len(q.Limits)
			p.nargs += len(q.args)
			p.cacheable = p.cacheable && !q.ConsumeDenied
			p.logs = p.logs || q.Algorithm == SlidingLog
			switch {
			case q.Outage == FailClosed:
				p.outage = FailClosed
			case q.Outage == Local && p.outage == FailOpen:
				p.outage = Local
			}
			for i := range q.Limits {
				if names[q.names[i]] {
					return fmt.Errorf("%w: policy %q and what it includes have two windows named %q", ErrInvalidPolicy, p.Name, q.names[i])
				}
				names[q.names[i]] = true
			}
		}
		p.script, p.argv = pickScript(p)
		p.single = p.script != decideScript
		p.evalsha = [3]any{"evalsha", p.script.hash, strconv.Itoa(len(p.all))}
	}
	return nil
}

// label is d in whole seconds ("3600s"), or milliseconds ("250ms").
func label(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
