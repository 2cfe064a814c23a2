package session

import "sync/atomic"

// Stats counts what a [Manager] did since New. Fallbacks (answers given
// without Redis) are TouchSkipped, ReadsRefused and WritesRefused.
type Stats struct {
	// L1Reads counts the reads answered from process memory with no round
	// trip (a touch may still have followed); Loads the reads of a session
	// from Redis (the L1 cache's Stats.L1Hits and Stats.Loads).
	L1Reads, Loads uint64
	// Refused counts reads that found no live session (unknown, revoked,
	// expired or malformed tokens).
	Refused uint64
	// Touches counts the activity records sent to Redis; TouchWrites those
	// Redis wrote (the others found a recent record by another instance).
	Touches, TouchWrites uint64
	// Created, Renewed, Updated and Revoked count sessions; Conflicts
	// counts updates refused for their version.
	Created, Renewed, Updated, Revoked, Conflicts uint64
	// NewDevices and NewIPs count the monitoring events.
	NewDevices, NewIPs uint64
	// TouchSkipped counts reads served from L1 whose activity could not
	// be recorded because Redis was unreachable (a fallback).
	TouchSkipped uint64
	// ReadsRefused counts reads refused because Redis was unreachable and
	// L1 could not answer within its bound (a fallback: fail closed).
	ReadsRefused uint64
	// WritesRefused counts writes refused because Redis was unreachable.
	WritesRefused uint64
	// RedisErrors, RedisTimeouts and BreakerSkips say why.
	RedisErrors, RedisTimeouts, BreakerSkips uint64
	// BreakerOpens counts the times the circuit breaker opened.
	BreakerOpens uint64
	// NotPropagated counts changes whose invalidation could not be
	// published at once (kept and replayed by the cache).
	NotPropagated uint64
}

// Fallbacks returns the number of answers given without Redis.
func (s Stats) Fallbacks() uint64 { return s.TouchSkipped + s.ReadsRefused + s.WritesRefused }

type stats struct {
	refused                                   atomic.Uint64
	touches, touchWrites                      atomic.Uint64
	created, renewed, updated, revoked        atomic.Uint64
	conflicts, newDevices, newIPs             atomic.Uint64
	touchSkipped, readsRefused, writesRefused atomic.Uint64
	redisErrors, redisTimeouts, breakerSkips  atomic.Uint64
	notPropagated                             atomic.Uint64
}

// Stats returns a snapshot of the Manager's counters.
func (m *Manager) Stats() Stats {
	cs := m.cache.Stats()
	return Stats{
		L1Reads: cs.L1Hits, Loads: cs.Loads, Refused: m.st.refused.Load(),
		Touches: m.st.touches.Load(), TouchWrites: m.st.touchWrites.Load(),
		Created: m.st.created.Load(), Renewed: m.st.renewed.Load(), Updated: m.st.updated.Load(),
		Revoked: m.st.revoked.Load(), Conflicts: m.st.conflicts.Load(),
		NewDevices: m.st.newDevices.Load(), NewIPs: m.st.newIPs.Load(),
		TouchSkipped: m.st.touchSkipped.Load(), ReadsRefused: m.st.readsRefused.Load(), WritesRefused: m.st.writesRefused.Load(),
		RedisErrors: m.st.redisErrors.Load(), RedisTimeouts: m.st.redisTimeouts.Load(), BreakerSkips: m.st.breakerSkips.Load(),
		BreakerOpens: m.br.Opens(), NotPropagated: m.st.notPropagated.Load(),
	}
}
