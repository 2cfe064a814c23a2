package tier

import (
	"context"
	"time"
)

// Tier names where a value came from.
type Tier uint8

// The tiers.
const (
	TierL1 Tier = iota + 1
	TierL2
	TierOrigin
)

// String returns "l1", "l2" or "origin".
func (t Tier) String() string {
	switch t {
	case TierL1:
		return "l1"
	case TierL2:
		return "l2"
	case TierOrigin:
		return "origin"
	}
	return "unknown"
}

// Op names an operation that leaves L1, as given to [Observer.Begin].
type Op uint8

// The operations.
const (
	OpL2Get Op = iota + 1
	OpLoad
	OpL2Set
	OpL2Delete
	// OpL2Lease takes a key's lease in L2: one round trip after a miss (two
	// when the key holds another instance's lease, see [Leaser]), or, in a
	// cache where more than about one L2 read in five misses, the first
	// read of a miss (get-or-lease), which then also answers hits
	// (Result.Hit).
	OpL2Lease
	// OpL2Epoch moves the namespace to its next epoch in L2
	// ([Cache.InvalidateAll], or a move owed after an overflow or a
	// failover). It has no key.
	OpL2Epoch
	// OpL2Tags records the invalidation time of tags in L2
	// ([Cache.InvalidateTags]). It has no key.
	OpL2Tags
)

// String returns the operation's name ("l2.get", "load", "l2.set",
// "l2.delete", "l2.lease", "l2.epoch", "l2.tags").
func (o Op) String() string {
	switch o {
	case OpL2Get:
		return "l2.get"
	case OpLoad:
		return "load"
	case OpL2Set:
		return "l2.set"
	case OpL2Delete:
		return "l2.delete"
	case OpL2Lease:
		return "l2.lease"
	case OpL2Epoch:
		return "l2.epoch"
	case OpL2Tags:
		return "l2.tags"
	}
	return "unknown"
}

// EventKind says what an [Event] reports.
type EventKind uint8

// The event kinds.
const (
	// EventMiss: a read missed L1.
	EventMiss EventKind = iota + 1
	// EventFallback: a read skipped or lost L2 and went on to the origin;
	// Reason says why.
	EventFallback
	// EventBreaker: the L2 circuit breaker changed state (From, To).
	EventBreaker
	// EventDecodeError: bytes in L2 did not decode; the key was deleted.
	EventDecodeError
	// EventValueRefused: a value was not cached because it is too large.
	EventValueRefused
	// EventNegativeHit: a cached "not found" answered a read that missed
	// L1 (Tier: where it was found, L2, or L1 by the flight's re-check).
	// Negative L1 hits are counted in Stats.NegativeHits, not reported,
	// like every L1 hit.
	EventNegativeHit
	// EventL1Dropped: L1 stopped being trusted as a whole (InvalidateAll,
	// or a consistency signal); Reason says why.
	EventL1Dropped
	// EventStaleServed: a stale value answered a read because the origin
	// failed or was slow (Reason: "origin_error", "soft_timeout"); Err is
	// the origin's error, if any.
	EventStaleServed
	// EventEpochOwed: the namespace must move to its next epoch (Reason:
	// "invalidation_overflow", "invalidate_all", "l2_failover"), and this
	// instance does not use L2 until it has; it moves as soon as L2
	// answers. With an L2 that cannot move epochs (Err), an overflow loses
	// the L2 step of the invalidations it could not keep.
	EventEpochOwed
	// EventEpochMoved: this instance moved the namespace to its next epoch
	// (Reason as for EventEpochOwed): no key written before is read again.
	EventEpochMoved
)

// String returns the kind's name in snake case.
func (k EventKind) String() string {
	switch k {
	case EventMiss:
		return "miss"
	case EventFallback:
		return "fallback"
	case EventBreaker:
		return "breaker"
	case EventDecodeError:
		return "decode_error"
	case EventValueRefused:
		return "value_refused"
	case EventNegativeHit:
		return "negative_hit"
	case EventL1Dropped:
		return "l1_dropped"
	case EventStaleServed:
		return "stale_served"
	case EventEpochOwed:
		return "epoch_owed"
	case EventEpochMoved:
		return "epoch_moved"
	}
	return "unknown"
}

// Reason says why something happened: in [Event.Reason], and from an
// [Invalidator] to its cache ([Sink.Untrust], [Sink.LimitAge]). Telemetry
// records it as it is (snake case).
type Reason string

// Fallback reasons ([EventFallback]).
const (
	ReasonBreakerOpen Reason = "breaker_open"
	// ReasonShardHeld: the key's L2 shard (a master, see [Sharder]) was
	// first seen since the last [Lineager] check, after a failover say, and
	// is not used until the next check (at most one replay tick, 100 ms).
	ReasonShardHeld Reason = "shard_held"
	ReasonL2Error   Reason = "l2_error"
	ReasonL2Timeout Reason = "l2_timeout"
	// ReasonEpochUnknown: the namespace's epoch could not be read from L2
	// yet (or an epoch move is owed), so L2 keys cannot be named.
	ReasonEpochUnknown Reason = "epoch_unknown"
	// ReasonDeletePending: this instance's Delete of the key has not
	// reached L2 yet (it waits for replay), so L2 is not read for it.
	ReasonDeletePending Reason = "delete_pending"
)

// Stale-serve reasons ([EventStaleServed]).
const (
	ReasonOriginError Reason = "origin_error"
	ReasonSoftTimeout Reason = "soft_timeout"
)

// Epoch-move reasons ([EventEpochOwed], [EventEpochMoved]).
const (
	// ReasonInvalidationOverflow: invalidations could not be kept for
	// replay (MaxPendingInvalidations).
	ReasonInvalidationOverflow Reason = "invalidation_overflow"
	// ReasonInvalidateAll: InvalidateAll could not reach L2 (also the
	// reason of the L1 drop InvalidateAll makes).
	ReasonInvalidateAll Reason = "invalidate_all"
	// ReasonL2Failover: L2 lost acknowledged writes (a failover or a
	// restart: see [Lineager]).
	ReasonL2Failover Reason = "l2_failover"
)

// Reasons L1 is dropped as a whole ([EventL1Dropped]): by the cache itself,
const (
	// ReasonDropLocal: [Cache.DropLocal].
	ReasonDropLocal Reason = "drop_local"
	// ReasonNamespaceCleared: another instance cleared the namespace, or
	// this one read a newer epoch from L2.
	ReasonNamespaceCleared Reason = "namespace_cleared"
)

// and by an invalidator ([Sink.Untrust], [Sink.LimitAge]; package
// invalidate gives these).
const (
	// ReasonSubscribed: the subscription was (re)established; what was
	// published before may have been missed.
	ReasonSubscribed Reason = "subscribed"
	// ReasonSequenceGap: messages from another instance were lost.
	ReasonSequenceGap Reason = "sequence_gap"
	// ReasonSubscribeRefused: the server refused the subscription.
	ReasonSubscribeRefused Reason = "subscribe_refused"
	// ReasonBusDown: the subscription is down or silent; L1 serves only
	// entries younger than the invalidator's bound (LimitAge).
	ReasonBusDown Reason = "bus_down"
	// ReasonBusSilenceOver: the subscription spoke again after a silence.
	ReasonBusSilenceOver Reason = "bus_silence_over"
)

// mayHaveMissedClear reports whether an L1 drop for r may hide a lost
// clear of the namespace: every reason an invalidator gives (messages were
// lost, or could not be received), unlike the cache's own drops (after a
// failover the cache moves the epoch itself). The cache then re-reads the
// namespace's epoch soon (one L2 read).
func (r Reason) mayHaveMissedClear() bool {
	switch r {
	case ReasonDropLocal, ReasonInvalidateAll, ReasonNamespaceCleared, ReasonL2Failover:
		return false
	}
	return true
}

// Call describes an operation given to [Observer.Begin] and [Observer.End].
type Call struct {
	Cache string // Options.Name
	Op    Op
	// Key is the user's key, or its keyed hash unless Options.ObserveRawKeys.
	Key string
	// KeyHashed reports whether Key is the keyed hash (the default).
	KeyHashed bool
}

// Result is how an operation ended.
type Result struct {
	// Hit is true for an L2 get (or a get-or-lease) that found a value, or a
	// load that found the key.
	Hit bool
	// Err is the failure, nil on success. A miss is not an error.
	Err      error
	Duration time.Duration
}

// Event is something that happened, given to [Observer.Event].
type Event struct {
	Cache  string
	Kind   EventKind
	Key    string // as in Call.Key; empty for cache-wide events
	Tier   Tier
	Reason Reason
	Err    error
	From   BreakerState // EventBreaker only
	To     BreakerState // EventBreaker only
	// Shard is the L2 shard whose breaker changed (EventBreaker; see
	// [Sharder]); empty when L2 has one shard.
	Shard string
}

// Observer receives what the cache does beyond L1 hits (those are counted,
// not reported one by one; see [Cache.Stats]). Implementations must be safe
// for concurrent use, must be fast, and must not call back into the cache.
// The otel package implements it with spans and metrics.
type Observer interface {
	// Begin is called when an operation starts; the context it returns is
	// the one the operation runs on and the one given to End.
	Begin(ctx context.Context, c Call) context.Context
	// End is called once for each Begin.
	End(ctx context.Context, c Call, r Result)
	// Event reports something that happened during a call on ctx.
	Event(ctx context.Context, e Event)
}

// StatsObserver is implemented by an [Observer] that wants to read the
// cache's counters (for example to export them as observable metrics). New
// calls Attach once with the cache's name and a function that returns a
// fresh snapshot; the function is safe to call at any time.
type StatsObserver interface {
	Attach(cache string, stats func() Stats)
}

// NoopObserver is an [Observer] that does nothing. The zero value is ready.
type NoopObserver struct{}

// Begin returns ctx.
func (NoopObserver) Begin(ctx context.Context, _ Call) context.Context { return ctx }

// End does nothing.
func (NoopObserver) End(context.Context, Call, Result) {}

// Event does nothing.
func (NoopObserver) Event(context.Context, Event) {}

var _ Observer = NoopObserver{}

// opStart is when an operation reported to the Observer began; the zero
// time when there is no Observer to report to (a clock read costs over
// 100 ns on some virtual machines, and a miss makes several).
func (c *Cache[V]) opStart() time.Time {
	if c.noObs {
		return time.Time{}
	}
	return time.Now()
}

// opDuration is the time since t0, or 0 if t0 is zero (see opStart).
func opDuration(t0 time.Time) time.Duration {
	if t0.IsZero() {
		return 0
	}
	return time.Since(t0)
}
