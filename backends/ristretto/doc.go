// Package ristretto is the in-process tier (L1) of tiercache: a cost-bounded
// store of decoded values over github.com/dgraph-io/ristretto/v2.
//
// [Cache] is generic over the stored type T and does not import package tier,
// so tier can use it as its default L1 without an import cycle; a
// *Cache[*tier.Entry[V]] satisfies tier.Local[V].
//
// NOTE: ristretto's Set is asynchronous and may drop a write (a full buffer,
// or the admission policy refusing a new key when the cache is full). Nothing
// may depend on a Set sticking: a dropped Set only costs a later miss. Use
// [Cache.Wait] to make the Sets that were accepted visible.
//
// WARNING: values are stored and returned as they are, without copying. A
// value returned by [Cache.Get] is shared with every other reader: do not
// mutate it (or anything it points to).
package ristretto
