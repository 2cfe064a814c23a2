// Package dbcache puts a [tier.Cache] in front of the functions that read a
// database, and invalidates it after the functions that write it.
//
// # Reads
//
// [Wrap] takes a query function of the shape func(ctx, K) (V, error), such
// as one that sqlc generates, and returns a function of the same shape that
// reads through the cache:
//
//	getProfile := dbcache.Wrap(profiles,
//		func(id int64) string { return "profile:" + strconv.FormatInt(id, 10) },
//		queries.GetProfile)
//	p, err := getProfile(ctx, 42) // L1, else L2, else queries.GetProfile
//
// The query's "no rows" error (sql.ErrNoRows by default, see [WithNotFound])
// is cached as a negative entry and returned as that same error, so callers
// keep their errors.Is(err, sql.ErrNoRows) checks. [WrapTagged] and
// [WrapList] also attach tags (such as "expert:42:day:2025-06-01") to the
// cached value, so that one [tier.Cache.InvalidateTags] call drops every
// list that mentions an entity, whatever its key.
//
// # Writes
//
// [WrapWrite] runs a write and, only once it has succeeded (for a
// transaction: once it has committed), deletes the keys and invalidates the
// tags it touched, in every cache named by an [Invalidation]. The write's
// error comes first; an invalidation that failed after a successful write is
// returned wrapped in [ErrInvalidate], with the write's result.
//
// # The booking domain
//
// The rest of the package is the domain this library was built for, and a
// worked example of the above: [Profile], [Expert] and [Appointment], the
// [Repository] interface that reads and writes them, [CachedRepository],
// which wraps any Repository with tier caches ([Caches]), [Counted], which
// counts the queries that reach the database, and [GenerateSeed], which
// makes a data set of any size. Two implementations of Repository
// live in subpackages, so that a program that only wraps its own queries
// links neither database driver (the design put them in dbcache itself; a
// subpackage keeps pgx and modernc.org/sqlite, the larger, out of the
// binaries that do not use them): [github.com/tiercache/tiercache/dbcache/pgstore]
// (PostgreSQL through pgx/v5) and
// [github.com/tiercache/tiercache/dbcache/sqlitestore] (SQLite through the
// pure-Go modernc.org/sqlite, the demo's default).
//
// Booking is atomic: a partial unique index on (expert_id, starts_at) for
// booked appointments and an insert-if-absent make two concurrent bookings
// of one slot give exactly one success and one [ErrSlotTaken].
package dbcache
