package tier

import "sync/atomic"

// Stats is a snapshot of a cache's counters since it was created.
// Requests = L1Hits + Misses.
type Stats struct {
	// L1Hits counts reads answered from L1 (including cached "not found"s);
	// zero when the Local does not implement [LocalStats].
	L1Hits uint64
	// Misses counts reads that missed L1 (the entry was absent, expired or
	// no longer trusted).
	Misses uint64
	// L2Hits counts L1 misses answered from L2.
	L2Hits uint64
	// NegativeHits counts reads answered by a cached "not found", in any tier.
	NegativeHits uint64
	// StaleServed counts reads answered with a stale value because the
	// origin failed or was slow (Options.FailSafe); Refreshes counts
	// background refreshes started by Options.RefreshAhead.
	StaleServed uint64
	Refreshes   uint64
	// Loads counts calls of the origin loader; LoadErrors those that failed
	// (a "not found" is not a failure).
	Loads      uint64
	LoadErrors uint64
	// Fallbacks counts reads that skipped or lost L2 and went to the origin.
	Fallbacks uint64
	// L2Errors counts failed L2 calls (timeouts included).
	L2Errors uint64
	// DecodeErrors counts values in L2 that did not decode (and were deleted).
	DecodeErrors uint64
	// Refused counts values not cached because they were too large.
	Refused uint64
	// LeaseWaits counts misses that waited for another instance's load
	// (its lease in L2); LeaseLost counts loads whose lease an invalidation
	// removed, so their value was not written to either tier.
	LeaseWaits uint64
	LeaseLost  uint64
	// PendingInvalidations is how many keys and tags wait for replay
	// because L2 or the invalidator could not be reached; Replayed counts
	// those that were replayed later. An entry is counted in Replayed
	// before it leaves PendingInvalidations.
	PendingInvalidations int
	Replayed             uint64
	// InvalidationOverflows counts keys and tags whose invalidation could
	// not be kept for replay (MaxPendingInvalidations); each overflow makes
	// the namespace owe an epoch move. EpochMoveOwed tells whether one is
	// owed now (this instance then does not use L2), and EpochMoves counts
	// the moves this instance made for an overflow, a failed InvalidateAll
	// or a failover of L2 ([EventEpochMoved]).
	InvalidationOverflows uint64
	EpochMoveOwed         bool
	EpochMoves            uint64
	// L2Failovers counts the times a [Lineager] L2 said it may have lost
	// acknowledged writes (a failover or a restart): each dropped L1 and
	// made the namespace move to its next epoch.
	L2Failovers uint64
	// InvalidationsSent counts keys and tags this cache published to the
	// other instances; InvalidationsReceived those it dropped on their word.
	InvalidationsSent     uint64
	InvalidationsReceived uint64
	// Breaker is the L2 circuit breakers' state now: with a [Sharder] L2
	// (one breaker per shard), open if any shard's is open, else half-open
	// if any is. BreakerOpens counts how many times one opened.
	Breaker      BreakerState
	BreakerOpens uint64
	// L1Cost is the sum of the costs stored in L1 (bytes; 0 once closed);
	// L1SetsDropped and L1SetsRejected count L1 writes lost to a full
	// buffer or refused by the admission policy, and L1Evicted entries L1
	// evicted on its own, for room (Delete, Set and invalidations are not
	// evictions). After Close the counters keep their last values.
	L1Cost         int64
	L1SetsDropped  uint64
	L1SetsRejected uint64
	L1Evicted      uint64
}

// counters are the cache's own counters. Each is written only on paths that
// leave L1, so plain atomics are cheap enough.
type counters struct {
	l1Unserved   atomic.Uint64 // L1 Gets that found an entry but did not serve it
	misses       atomic.Uint64
	l2Hits       atomic.Uint64
	negativeHits atomic.Uint64
	loads        atomic.Uint64
	loadErrors   atomic.Uint64
	fallbacks    atomic.Uint64
	l2Errors     atomic.Uint64
	decodeErrors atomic.Uint64
	refused      atomic.Uint64
	leaseWaits   atomic.Uint64
	leaseLost    atomic.Uint64
	replayed     atomic.Uint64
	invOverflows atomic.Uint64
	breakerOpens atomic.Uint64
	failovers    atomic.Uint64
	epochMoves   atomic.Uint64
	staleServed  atomic.Uint64
	invSent      atomic.Uint64
	invReceived  atomic.Uint64
	refreshes    atomic.Uint64
}
