package tier

import (
	"sync/atomic"
	"time"
)

// Entry is what L1 stores for one key: the decoded value and its times.
// An Entry is immutable once stored; it is shared by every reader.
type Entry[V any] struct {
	// Value is the cached value; the zero value for a negative entry.
	//
	// WARNING: Value is shared with every caller that reads the key. Do not
	// mutate it, or anything it points to.
	Value V
	// Negative marks a cached "not found".
	Negative bool
	// Tags are the tags the value depends on (GetOrLoadTagged).
	Tags []string
	// Created is when the read that produced the value began (unix nanos):
	// invalidations after that instant make the entry untrusted.
	Created int64
	// Fresh is the end of the entry's fresh life (unix nanos).
	Fresh int64
	// Deadline is when the entry must no longer be served at all (unix
	// nanos); Deadline >= Fresh. Between Fresh and Deadline it is stale,
	// served only when the origin fails or is slow (Options.FailSafe).
	Deadline int64
	// RefreshAt, when not zero, is when a hit starts a background refresh
	// (Options.RefreshAhead).
	RefreshAt int64
	// Stale marks an entry re-armed after an origin failure: its value is
	// past its fresh life and each hit is counted as a stale serve.
	Stale bool

	refreshing atomic.Bool // a background refresh was started from this entry
	size       int         // the length of its encoding (0: unknown), for the L1 cost of copies
}

// Local is the in-process tier (L1). Implementations must be safe for
// concurrent use. [backends/ristretto.Cache] of *Entry[V] implements it.
//
// NOTE: Get is on the hot path of every hit: it must not block on I/O and
// should not allocate. Set may be asynchronous and may drop the write; the
// cache never depends on a Set sticking. Delete must be ordered after every
// earlier accepted Set of the same key. An implementation must not call back
// into the [Cache].
type Local[V any] interface {
	// Get returns the entry stored under key.
	Get(key string) (*Entry[V], bool)
	// Set stores e under key with a cost (bytes) and a time to live; it
	// reports whether the write was accepted.
	Set(key string, e *Entry[V], cost int64, ttl time.Duration) bool
	// Delete removes key.
	Delete(key string)
	// Wait blocks until the Sets and Deletes made before it are applied:
	// accepted Sets visible to Get, deleted keys gone (also when a Set of
	// the key was still queued when Delete was called).
	Wait()
	// Close releases the store. The cache calls it once, from Close.
	Close()
}

// LocalStats is implemented by a [Local] that counts what it does; the cache
// reports these counts in [Stats]. Hits must count every Get that found an
// entry; Evicted counts entries the store removed on its own (for room, or
// expired), not those removed by Delete. The cache reads the counts one
// last time before it closes the store, and reports those afterwards.
type LocalStats interface {
	Hits() uint64
	Cost() int64
	SetsDropped() uint64
	SetsRejected() uint64
	Evicted() uint64
}
