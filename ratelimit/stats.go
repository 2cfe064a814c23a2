package ratelimit

import "sync/atomic"

// Stats counts what a [Limiter] decided since New. Every fallback (a
// decision taken without Redis) is in one of LocalAllowed, LocalDenied,
// FailClosedDenied and FailOpenAllowed.
type Stats struct {
	// Decisions Redis took.
	RedisAllowed, RedisDenied uint64
	// Denials answered from the denial cache, without a round trip.
	CacheDenied uint64
	// Fallbacks, by outage mode.
	LocalAllowed, LocalDenied uint64
	FailClosedDenied          uint64
	FailOpenAllowed           uint64
	// Why Redis was not asked or did not answer: failed calls, timed-out
	// calls, and calls skipped because the breaker was open.
	RedisErrors, RedisTimeouts, BreakerSkips uint64
	// LocalFull counts calls denied because the local limiter could not
	// track one more actor; LocalUntracked, admissions it could not record.
	LocalFull, LocalUntracked uint64
	// BreakerOpens counts the times the circuit breaker opened.
	BreakerOpens uint64
}

// Fallbacks returns the number of decisions taken without Redis.
func (s Stats) Fallbacks() uint64 {
	return s.LocalAllowed + s.LocalDenied + s.FailClosedDenied + s.FailOpenAllowed
}

// Allowed returns the number of admitted calls, whoever decided.
func (s Stats) Allowed() uint64 { return s.RedisAllowed + s.LocalAllowed + s.FailOpenAllowed }

// Denied returns the number of denied calls, whoever decided.
func (s Stats) Denied() uint64 {
	return s.RedisDenied + s.CacheDenied + s.LocalDenied + s.FailClosedDenied
}

type stats struct {
	redisAllowed, redisDenied, cacheDenied  atomic.Uint64
	localAllowed, localDenied               atomic.Uint64
	failClosed, failOpen                    atomic.Uint64
	redisErrors, redisTimeouts              atomic.Uint64
	breakerSkips, localFull, localUntracked atomic.Uint64
}

// Stats returns a snapshot of the Limiter's counters.
func (l *Limiter) Stats() Stats {
	s := Stats{
		RedisAllowed:     l.st.redisAllowed.Load(),
		RedisDenied:      l.st.redisDenied.Load(),
		CacheDenied:      l.st.cacheDenied.Load(),
		LocalAllowed:     l.st.localAllowed.Load(),
		LocalDenied:      l.st.localDenied.Load(),
		FailClosedDenied: l.st.failClosed.Load(),
		FailOpenAllowed:  l.st.failOpen.Load(),
		RedisErrors:      l.st.redisErrors.Load(),
		RedisTimeouts:    l.st.redisTimeouts.Load(),
		BreakerSkips:     l.st.breakerSkips.Load(),
		LocalFull:        l.st.localFull.Load(),
		LocalUntracked:   l.st.localUntracked.Load(),
		BreakerOpens:     l.br.Opens(),
	}
	return s
}
