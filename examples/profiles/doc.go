// Package profiles is a complete small service cached with tiercache:
// GET and PUT /profiles/{id} on PostgreSQL through pgx, with queries of the
// shape sqlc generates ([Queries]), read through a [dbcache.Query] and kept
// consistent across instances by the invalidation bus (package
// invalidate). The package's Example wires two instances to one database
// and one Redis, as two processes of a service would be.
//
// What it shows:
//
//   - A missing row is a 404 on every read, the first (which ran the
//     query) and the later ones (answered by the cached "not found", on any
//     instance): with pgx, dbcache needs no option for that.
//   - The write path names the key once: [Service] drops a profile with
//     the query handle's Invalidation after the UPDATE has committed.
//   - Consistency across instances: the instance that wrote reads its own
//     write at once; another instance drops its copy when the invalidation
//     reaches it over Redis pub/sub (p99 about 0.24 ms over a loopback
//     Redis), and may answer the old profile until then.
//
// This package is an example: it lives in the repository's examples
// module, and its API may change at any time.
package profiles
