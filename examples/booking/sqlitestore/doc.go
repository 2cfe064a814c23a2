// Package sqlitestore is the booking domain (package booking) on SQLite,
// through the pure-Go driver modernc.org/sqlite (no cgo): the embedded
// database that the demo uses when no PostgreSQL is configured.
//
// [Open] applies the embedded schema (idempotent) and opens the database
// in WAL mode with a busy timeout, with two pools: one connection for
// writes, whose transactions begin IMMEDIATE so that they never fail to
// upgrade a read lock, and several for reads, which WAL lets run while a
// write is in progress.
//
// Booking inserts with ON CONFLICT DO NOTHING against a partial unique
// index on (expert_id, starts_at) WHERE status = 'booked', so of two
// bookings of one slot exactly one inserts a row and the other gets
// booking.ErrSlotTaken. A missing row is sql.ErrNoRows.
package sqlitestore
