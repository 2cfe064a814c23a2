// Package goredis is the shared tier (L2) of tiercache over a go-redis v9
// redis.UniversalClient that the caller creates and owns, so TLS, ACL users,
// Sentinel and Cluster all come from the caller's client. [Backend]
// satisfies tier.Remote.
//
// Reads use GETRANGE key 0 MaxValueBytes rather than GET: a value larger
// than the limit is refused with a *tier.ValueTooLargeError after reading
// at most MaxValueBytes+1 bytes of it, in the same single round trip as a
// GET. A missing key is tier.ErrNotFound (GETRANGE answers "" for it; a
// value written by tiercache is never empty); redis.Nil never leaks out.
// Writes of several keys are pipelined one command per key, so they work on
// a Cluster whatever slots the keys hash to.
//
// # Cluster and Sentinel
//
// Over a redis.ClusterClient the Backend is a tier.Sharder: the cache keeps
// one circuit breaker per master ([Backend.Shard]), so a dead master stops
// only the calls to its slots. On a connection error (not an error reply)
// the Backend asks the ClusterClient to re-read its slot map (at most every
// 250 ms): go-redis alone does so only on MOVED/READONLY replies or every
// ClusterStateReloadInterval (60 s), and keeps dialling a dead master until
// then. With this, writes to a killed master's slots work again about
// 0.1 to 0.25 s after its replica's promotion, with go-redis's defaults.
//
// Recommended on top of the defaults (none is needed for correctness):
//
//   - ContextTimeoutEnabled: true (required; [New] refuses a client
//     without it).
//   - DialTimeout of about 1 s instead of 5 s, so a reload that meets a dead
//     node (the slot map is read from one node at a time) moves on sooner.
//   - ClusterOptions.ClusterStateReloadInterval of a few seconds (5 s): a
//     periodic reload catches topology changes that raise no error on the
//     data path (a replica added, a master that came back).
//   - Keep ReadOnly, RouteByLatency and RouteRandomly off: replicas lag, and
//     a read from one can return a value a Delete already removed.
//   - Sentinel (redis.NewFailoverClient): the defaults. Its data connections
//     move on +switch-master; its pub/sub connections do not (package
//     invalidate re-subscribes).
//
// Failover can undo writes Redis acknowledged (replication is asynchronous).
// The Backend is a tier.Lineager and a tier.EpochRaiser: the cache notices a
// new master (run_id, replication id) and moves the namespace to a new epoch,
// so nothing written before is read again. [Options.WaitReplicas] also
// makes each write wait for replicas (off by default; see there).
package goredis
