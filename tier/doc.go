// Package tier is the two-tier read-through cache of tiercache: a [Cache]
// keeps decoded values in process (L1, a [Local], ristretto by default) over
// a shared remote tier (L2, a [Remote], Redis through backends/goredis), and
// loads from the origin (the database) on a miss.
//
// The read path of [Cache.GetOrLoad] (read.go tells it in the same order):
//
//  1. L1. A fresh hit returns the stored value: no decode, no allocation, no
//     lock, no observer call. L1 hits (cached "not found"s included) are
//     counted, and appear in [Cache.Stats].
//  2. On an L1 miss the caller joins the key's flight, or starts one: one
//     load per key in the process, however many callers miss together. Each
//     caller stops waiting when its own context ends. A new flight first
//     re-checks L1, where the previous flight's value may just have become
//     visible.
//  3. L2: one round trip, bounded by [Options.L2Timeout] and skipped while
//     the circuit breaker is open. It runs on the goroutine of the caller
//     that started the flight (an L2 hit costs no goroutine hand-off), on
//     its context's values but not its cancellation. A hit is decoded, put
//     in L1 and returned. Bad bytes are a miss: the key is deleted and the
//     observer hears [EventDecodeError].
//  4. The lease, with an L2 that is a [Leaser] (backends/goredis): after a
//     miss the flight takes the key's lease, or, while another instance
//     holds it, waits up to [Options.LeaseWait] for that instance's value.
//     When more than about one L2 read in five misses, step 3 is
//     get-or-lease, which answers a hit too and takes the lease on a miss.
//     With a [WriteCarrier] L2 the misses of one shard share lease round
//     trips: while a few are on their way, the leases asked for meanwhile
//     queue and go together in the next one.
//  5. The origin, bounded by [Options.LoadTimeout], on the flight's own
//     goroutine (or, when the caller's context can never end, on the
//     caller's: it would wait for the whole load anyway) and a context that
//     keeps the first caller's values but not its cancellation.
//     [ErrNotFound] (or an error that [Options.IsNotFound] accepts) is
//     cached as a negative entry for [Options.NegativeTTL].
//  6. The value goes to L1, the callers get it, then the flight writes L2
//     under its lease (off the callers' path). With a [WriteCarrier] L2
//     (backends/goredis) the write waits in a queue for the next miss's
//     lease round trip to the same shard, which carries it, or is sent on
//     its own after a fraction of a millisecond: a stream of misses costs
//     at most one round trip each. A value whose encoding is larger than
//     [Options.MaxValueBytes] is returned but not cached, and reported.
//
// L1 charges every entry it holds, whichever step put it there, with its
// encoded size ([Options.Cost]), so [Options.L1MaxCost] bounds what it
// holds.
//
// Fencing: [Cache.Delete], [Cache.Set] and [Cache.InvalidateAll] fence the
// flights that are running, so a load that began before an invalidation
// never installs its value in L1 afterwards, and new callers start a fresh
// load instead of joining the old one. Every L1 entry records when the read
// that produced it began; [Cache.InvalidateAll] makes every entry (and every
// running load) older than the call untrusted, in O(1), without walking L1.
//
// Keys: any non-empty byte string up to [Options.MaxKeyBytes]. They are
// binary-safe: CR, LF, '*', '?', '{' and '}' have no special meaning (the
// cache never uses KEYS or SCAN patterns). In L2 a key lives under the
// prefix "tc:<len(namespace)>:<namespace>:<epoch>:", so two different
// (namespace, key) pairs can never produce the same Redis key (the length
// fixes where the namespace ends), and [Cache.InvalidateAll] clears a
// namespace by moving it to the next epoch. Tag times live under
// "tc:<len>:<namespace>#t:<tag>" and the epoch under "…#epoch": the byte
// after the namespace tells them apart from value keys. On a Redis Cluster
// the first "{…}" of a key is a hash tag: it picks the key's slot (the
// namespace may not contain braces, so only the user's key can carry one).
//
// Namespaces and types: a cache with an L2 must be given
// [Options.Namespace] ([New] refuses it otherwise, with [ErrNoNamespace]),
// and every L2 value carries a tag made of V's type name and
// [Options.Schema]: bytes written by a cache of another type (or schema)
// that shares the namespace by mistake are a counted decode error and a
// load, never a zero value.
//
// Consistency across instances: [Cache.Delete], [Cache.Set],
// [Cache.InvalidateTags] and [Cache.InvalidateAll] update L2 first (DEL also
// removes the key's lease, so a load that read the origin before the write
// can never write its value afterwards: the memcache-lease fence), then
// tell the other instances through [Options.Invalidator] (package
// invalidate), whether or not the L2 step worked. A step that failed is
// kept and replayed (an L2 step that is replayed is announced again); what
// cannot be kept makes the namespace owe a move to its next epoch, made as
// soon as L2 answers. While the invalidator cannot vouch for L1
// (subscription down or silent), L1 serves only entries younger than its
// bound. When L2 may have lost acknowledged writes (a failover or restart
// seen by a [Lineager]), the namespace moves to its next epoch and L1 is
// dropped. A write returns before the other instances have heard it; where
// a read on another instance must see it, [Cache.DeleteAndWait] and
// [Cache.SetAndWait] also wait until every live instance has dropped the
// key (with an invalidator that is an [AckPublisher]).
//
// Failure: every L2 call is bounded by [Options.L2Timeout]; L2 failures
// count against a circuit breaker, one per L2 shard (see [Sharder]), and
// while a shard's is open the calls to it skip L2: reads go to the origin
// ([Cache.Get] reports [ErrL2]), writes are kept for replay. With
// [Options.FailSafe] a stale value stands in for a failing or slow origin.
//
// Package tier imports neither OpenTelemetry nor go-redis; [Observer] and
// [Remote] are the seams those packages plug into.
package tier
