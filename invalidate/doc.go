// Package invalidate carries tiercache invalidations between instances over
// Redis pub/sub, and tells each cache what it can no longer vouch for when
// messages may have been lost.
//
// A [Bus] is created over the caller's go-redis client (one server,
// Sentinel's failover client or a Cluster client) and started with
// [Bus.Run], which returns when its context ends; [Bus.Ready] waits until
// its subscriptions are confirmed. Caches join it through
// tier.Options.Invalidator; until Run runs, their invalidations fail with
// [ErrNotRunning] and are kept for replay. Each cache
// namespace has its own channel ("tc:<len>:<namespace>#inv"). A message
// carries a version, the origin instance's id, a per-origin sequence number
// and the keys and tags invalidated; the invalidations of several callers
// that arrive while a PUBLISH is in flight go out together in the next one
// (group commit: no added delay when idle, fewer messages under load; when
// nothing is in flight the caller publishes its own message, without a
// hand-off to the sender goroutine). An instance ignores its own messages.
//
// When a cache's L2 is a goredis.Backend on the bus's own client (and
// without WaitReplicas), the bus also takes over the L2 step of its
// Deletes (tier.DeletePublisher): one DEL per key goes in the PUBLISH's
// pipeline, before it, on the node the channel is published on, so a
// Delete costs one round trip instead of two, and Redis has applied the
// DEL before any instance hears the message. On Cluster this holds for the
// keys whose master is that node; the others are deleted first, then
// published, as with any Remote. [Stats].DeletesSent counts them.
//
// Redis pub/sub is at-most-once, and go-redis can stay subscribed to a dead
// or demoted connection without noticing, so the bus trusts neither:
//
//   - Every instance publishes a heartbeat on each channel (every
//     Options.Heartbeat) and hears its own. A subscriber that hears nothing
//     for Options.DeadAfter closes the subscription and opens a new one on a
//     new connection; go-redis's own reconnection is not relied on.
//   - While a channel is not confirmed subscribed, or is silent, its cache
//     does not serve L1 entries older than Options.StaleBound: the bus sets
//     an age limit on the cache (tier.Sink.LimitAge), which the cache
//     checks at each read, so it holds however late the bus's goroutines
//     run. The heartbeat loop sets it again at each tick while the channel
//     is down or silent, and lifts it when the channel is confirmed or
//     heard again (dropping L1 then, as below).
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
// # Acknowledged invalidations
//
// A plain Delete returns once the message is published; another instance
// drops its copy when the message reaches it, a fraction of a millisecond
// to a few milliseconds later (see the README). tier.Cache.DeleteAndWait
// and SetAndWait also wait until every other live instance has applied it.
// After the invalidation, the bus publishes an ack request on the
// namespace's channel, on the same node (so every instance hears it after
// the invalidation, or finds the invalidation missing by its sequence
// number and drops L1). Every instance that hears it settles its cache's
// L1 (tier.Settler) and publishes an ack on the same channel. The writer
// waits for the acks of the instances it heard (any message) within
// Options.DeadAfter when its own request comes back to it, and for at most
// Options.AckTimeout; one that does not answer makes the wait fail with a
// [*NotAcknowledgedError] naming it (matching tier.ErrNotAcknowledged). A
// bus whose Run ends says it is leaving, and is not waited for from then
// on; one that went away without a word (a crash, a lost connection) is
// waited for, and named, until it has been silent for DeadAfter.
//
// Two rules close the gaps of that membership. A subscription just
// confirmed has not heard every live instance yet: a wait decides whom to
// wait for only once its subscription has listened for a heartbeat period
// (the first wait after a start or a resubscription is that much slower).
// And an instance others may not know yet must not serve what a write
// they did not wait for replaced: after each (re)subscription a cache
// serves no L1 entry until its bus hears one of its own messages back
// (a heartbeat sent at once; one round trip), which every other instance
// hears before its own next ack request, or after this instance heard that
// request and what came before it. [Bus.Ready] waits for that too.
//
// A version of this package older than the acks counts the ack requests
// as Stats.BadMessages and never answers: during a rolling upgrade, waits
// fail naming the instances not yet upgraded (the writes themselves are
// done, and plain invalidations work between versions).
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
// A node of the cluster that dies is left at once, without waiting for the
// cluster to fail over or for the client's slot map. When the connection
// the bus publishes a channel on or the one it is subscribed on fails, the
// bus avoids that node for 5 s, asks the client to reload its slot map
// (ClusterClient.ReloadState, at most every 250 ms, and at each heartbeat
// tick while a node is avoided: go-redis otherwise reloads it only on a
// MOVED reply, which a keyless PUBLISH never gets, or every 60 s) and uses
// another master: it publishes the failed messages again there at once
// (same sequence numbers: a receiver that got one twice counts a gap), and
// subscribes there (every node hears every PUBLISH). Once the reloaded map
// names the promoted replica, the bus publishes there. Measured on a local
// cluster (cluster-node-timeout 1500 ms, go-redis defaults, the bus's
// client used by nothing else): after a SIGKILL of the master the bus
// publishes on and is subscribed to, messages flow again 0.2–0.9 s later,
// and are published on the promoted replica within a second of the
// cluster's own failover (3.0–3.5 s). A graceful CLUSTER FAILOVER or a
// migration of the
// channel's slot interrupts nothing: the old node keeps taking and
// forwarding PUBLISH until the map changes.
//
// Nothing needs setting on the client for the bus; go-redis's defaults do.
// For the cache's own reads and writes, a ClusterStateReloadInterval of a
// few seconds shortens how long the data path dials a dead master.
//
// # Sentinel
//
// go-redis's failover client (redis.NewFailoverClient) moves its data
// connections when its Sentinel announces +switch-master, but not its
// pub/sub connections. After a SIGKILL the subscription fails and the bus
// subscribes again through the client, which dials the master Sentinel
// names. After a SENTINEL FAILOVER, though, the old master stays a master
// (Sentinel turns it into a replica about 10 s later) and a subscription
// there hears nothing more once every instance publishes to the new one.
// So on a failover client the bus checks, with each heartbeat, that it is
// subscribed on the node its messages go to: it publishes an empty message
// on a channel only it subscribes to ("tc:probe:<InstanceID>") through the
// client's data path, and if the reply says no subscriber got it, it
// subscribes again through the client (counted in Stats.Misplaced). This
// follows the client's own view of the master and needs no Sentinel
// address. An ACL user needs that channel granted (&tc:probe:*); without
// it the bus goes without the probe, and after a SENTINEL FAILOVER hears
// the new master only once Options.DeadAfter has passed. Measured on a local set (1 master, 1 replica, 3 Sentinels,
// down-after 1 s, bus defaults): after SENTINEL FAILOVER (switch at
// 1.2 s) messages flow again at 2.4–2.5 s; after a SIGKILL of the master
// (switch at 2.3–2.4 s), at 2.7–2.9 s. Until then, what other instances
// publish on the new master does not reach this one; its new subscription
// drops L1 for that. (Writes the old master acknowledged but had not
// replicated are lost by the failover itself: that is the cache's concern,
// not the bus's.)
//
// Dropping L1 costs O(1) (tier raises a trust floor); values are then read
// again from L2, which Delete updated synchronously.
package invalidate
