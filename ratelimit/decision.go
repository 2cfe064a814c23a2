package ratelimit

import "time"

// Source says who took a [Decision].
type Source uint8

// The sources. The last three are fallbacks: Redis could not be asked.
const (
	// SourceRedis: the script on Redis decided, on Redis's clock.
	SourceRedis Source = iota + 1
	// SourceDenialCache: Redis had denied this actor until a time not yet
	// reached, and the Limiter answered from memory (L1) without a round
	// trip. Only denials are cached: no other call can make room earlier.
	SourceDenialCache
	// SourceLocal: Redis was unreachable and the policy's in-process
	// limiter decided (outage mode Local).
	SourceLocal
	// SourceFailClosed: Redis was unreachable and the policy denies
	// (outage mode FailClosed).
	SourceFailClosed
	// SourceFailOpen: Redis was unreachable and the policy admits
	// (outage mode FailOpen).
	SourceFailOpen
)

// String returns "redis", "denial_cache", "local", "fail_closed" or
// "fail_open".
func (s Source) String() string {
	switch s {
	case SourceRedis:
		return "redis"
	case SourceDenialCache:
		return "denial_cache"
	case SourceLocal:
		return "local"
	case SourceFailClosed:
		return "fail_closed"
	case SourceFailOpen:
		return "fail_open"
	}
	return "unknown"
}

// Fallback reports whether s is an outage decision (Redis not asked).
func (s Source) Fallback() bool { return s >= SourceLocal }

// Decision is the answer to one call of [Limiter.Allow] or
// [Limiter.AllowN].
type Decision struct {
	// Allowed reports whether the call was admitted (and consumed Cost
	// units of every window).
	Allowed bool
	// Policy is the policy the call named.
	Policy string
	// Cost is the number of units the call asked for.
	Cost int
	// Source says who decided.
	Source Source

	// Remaining is the least room left among the windows (after this call
	// if it was admitted), and Limit that window's N; Reset is how long
	// until that room next grows. Remaining is -1 when nothing is known
	// (SourceFailOpen, SourceFailClosed).
	Remaining int
	Limit     int
	Reset     time.Duration
	// RetryAfter is, for a denied call, how long until a call of the same
	// cost could be admitted (if nothing else is admitted meanwhile); 0
	// when allowed.
	RetryAfter time.Duration
	// DeniedBy names the window that denied the call (the one with the
	// longest RetryAfter): a Limit.Name. Empty when allowed.
	DeniedBy string

	// Windows has one entry per window of the policy and of the policies
	// it includes, in order. It is empty from SourceDenialCache (the
	// summary above describes the window that denied: DeniedBy, its Limit,
	// Remaining 0, and Reset = RetryAfter), which is how a cached denial
	// costs no allocation, and from SourceFailOpen and SourceFailClosed.
	Windows []Window

	// Time is Redis's clock when the script decided (SourceRedis only;
	// zero otherwise).
	Time time.Time
}

// Window is the state of one window after a call.
type Window struct {
	// Policy is the policy the window belongs to (the one called, or one
	// it includes).
	Policy string
	// Name is the window's name (Limit.Name).
	Name string
	// Limit is the window's N, and Per its length.
	Limit int
	Per   time.Duration
	// Remaining is the room left in the window (after this call if it was
	// admitted): a call of cost up to Remaining would fit now.
	Remaining int
	// Reset is how long until Remaining next grows.
	Reset time.Duration
	// RetryAfter is how long until a call of this cost fits this window;
	// 0 if it fits now.
	RetryAfter time.Duration
}
