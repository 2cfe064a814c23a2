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
// Dropping L1 costs O(1) (tier raises a trust floor); values are then read
// again from L2, which Delete updated synchronously.
package invalidate
