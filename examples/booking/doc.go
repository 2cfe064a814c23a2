// Package booking is the application tiercache was built for, and a worked
// example of package dbcache: experts that guests book by the half hour.
// The demo (examples/cmd/demo) runs it.
//
// [Profile], [Expert] and [Appointment] are read and written through the
// [Repository] interface. [CachedRepository] wraps any Repository with
// tier caches ([Caches]) through dbcache's query handles, and invalidates
// them after each write has committed; [Counted] counts the queries that
// reach the database; [GenerateSeed] makes a data set of any size. Two
// implementations of Repository live in subpackages:
// [github.com/tiercache/tiercache/examples/booking/pgstore] (PostgreSQL
// through pgx/v5) and
// [github.com/tiercache/tiercache/examples/booking/sqlitestore] (SQLite
// through the pure-Go modernc.org/sqlite, the demo's default).
//
// Booking is atomic: a partial unique index on (expert_id, starts_at) for
// booked appointments and an insert-if-absent make two concurrent bookings
// of one slot give exactly one success and one [ErrSlotTaken].
//
// This package is an example: it lives in the repository's examples
// module, so that the library's users do not get its drivers in their
// go.sum. Its API may change at any time.
package booking
