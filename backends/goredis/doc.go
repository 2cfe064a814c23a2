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
package goredis
