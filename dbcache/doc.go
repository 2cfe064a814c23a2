// Package dbcache puts a [tier.Cache] in front of the functions that read a
// database, and invalidates it after the functions that write it.
//
// # Reads
//
// [Wrap] takes a query function of the shape func(ctx, K) (V, error), such
// as one that sqlc generates, and returns a [Query]: a handle that reads
// through the cache and knows the key of each argument, so that the write
// sites do not repeat the key function.
//
//	profiles := dbcache.Wrap(cache,
//		func(id int64) string { return "profile:" + strconv.FormatInt(id, 10) },
//		queries.GetProfile)
//	p, err := profiles.Get(ctx, 42) // L1, else L2, else queries.GetProfile
//	getProfile := profiles.Get      // a func(ctx, int64) (Profile, error), as before
//
// A missing row needs no configuration with database/sql, pgx or sqlc:
// every read that finds none (the one that ran the query, and the later
// ones answered by the cached "not found" on any instance) returns an error
// matching sql.ErrNoRows, pgx.ErrNoRows and [ErrNotFound] (errors.Is).
// [WrapTagged] and [WrapList] also attach tags (such as
// "expert:42:day:2025-06-01") to the cached value, so that one tag
// invalidation drops every list that mentions an entity, whatever its key.
//
// # Writes
//
// [WrapWrite] runs a write and, only once it has succeeded (for a
// transaction: once it has committed), deletes the keys and invalidates the
// tags it touched, in every cache named by an [Invalidation] (a [Query]
// makes the one for its keys: [Query.Invalidation]). The write's error
// comes first; an invalidation that failed after a successful write is
// returned wrapped in [ErrInvalidate], with the write's result.
// [Query.Forget] drops keys directly.
//
//	updateProfile := dbcache.WrapWrite(queries.UpdateProfile,
//		func(arg UpdateProfileParams, _ Profile) []dbcache.Invalidation {
//			return []dbcache.Invalidation{profiles.Invalidation(arg.ID)}
//		})
//
// # Consistency
//
// After a write returns, the writer's instance reads the new row. Other
// instances drop their L1 copy when the invalidation reaches them over the
// cache's invalidator (package invalidate): until then (p99 about 0.24 ms
// over a loopback Redis, measured by the repository's BenchmarkStaleness)
// they may still answer the old value. The README's consistency section
// says more.
//
// A complete service (pgx, the invalidation bus, two instances) is in the
// examples module of the repository: examples/profiles. The booking
// application that the demo runs (examples/booking) uses every part of this
// package.
package dbcache
