// Package invalidate carries tiercache invalidations between instances over
// Redis pub/sub, and tells each cache what it can no longer vouch for when
// messages may have been lost.
//
// A [Bus] is created over the caller's go-redis client and started with
// [Bus.Run]; caches join it through tier.Options.Invalidator. Each cache
// namespace has its own channel ("tc:<len>:<namespace>#inv"). A message
// carries a version, the origin instance's id, a per-origin sequence number
// and the keys and tags invalidated; the invalidations of several callers
// that arrive while a PUBLISH is in flight go out together in the next one
// (group commit: no added delay when idle, fewer messages under load). An
// instance ignores its own messages.
//
// Redis pub/sub is at-most-once, and go-redis can stay subscribed to a dead
// or demoted connection without noticing, so the bus trusts neither:
//
//   - Every instance publishes a heartbeat on each channel (every
//     Options.Heartbeat) and hears its own. A subscriber that hears nothing
//     for Options.DeadAfter closes the subscription and opens a new one on a
//     new connection; go-redis's own reconnection is not relied on.
//   - While a channel is not confirmed subscribed, or is silent, its cache
//     does not serve L1 entries older than Options.StaleBound (the bus
//     raises the cache's trust floor on every tick).
//   - Whenever a subscription is (re)confirmed, the cache drops L1: anything
//     may have been missed meanwhile.
//   - A gap in an origin's sequence numbers (seen in a data message or in a
//     heartbeat, which carries the origin's last number) drops L1.
//
// The channels of all the namespaces a bus serves share one connection, but
// each is subscribed with its own SUBSCRIBE and confirmed or refused on its
// own. A channel Redis refuses (NOPERM: the ACL user may not use it) stays
// unconfirmed, so its cache keeps the Options.StaleBound limit; the refusal
// is counted (Stats.SubscribeErrors), kept ([Bus.SubscribeErr], matching
// [ErrSubscribeRefused]) and reported once to the cache's observer as an L1
// drop with reason "subscribe_refused", and the channel is retried on the
// same connection with backoff (50 ms, doubling up to 1 s). The other
// channels are not disturbed.
//
// # Redis Cluster
//
// On Cluster, a PUBLISH reaches every node through the cluster bus, but a
// message published on another node than the subscriber's arrives later
// than one published on the subscriber's own node, and go-redis sends a
// keyless PUBLISH to any master: one origin's messages would be reordered,
// and each reordering would count as a gap and drop L1. The bus therefore
// publishes every message of a channel (data and heartbeats) on one node,
// the master of the channel's slot as the client's slot map says at each
// send. Redis delivers one node's messages in the order it received them,
// and forwards them over one cluster-bus link per node, so each receiver
// sees an origin's messages in order wherever it is subscribed.
//
// Sharded pub/sub (SPUBLISH, SSUBSCRIBE) would also order them, and keep
// the traffic within one shard instead of every node, but its subscribers
// must follow the slot's owner: Redis drops them on every slot move and
// failover (sunsubscribe), and go-redis's sharded pub/sub on Cluster has
// open bugs on exactly that (redis/go-redis #3099, #3133, #3806). Plain
// pub/sub lets a subscriber listen on any live node, so only the publisher
// has to follow the slot map. When the node a channel is published on
// changes (a slot move or failover seen in the slot map), a message sent
// just before the change may arrive after one sent just after it: at most
// one gap per receiver and change, which drops L1 (the safe direction).
//
// Dropping L1 costs O(1) (tier raises a trust floor); values are then read
// again from L2, which Delete updated synchronously.
package invalidate
