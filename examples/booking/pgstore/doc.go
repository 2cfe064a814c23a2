// Package pgstore is the booking domain (package booking) on PostgreSQL,
// through pgx/v5 and a pgxpool.Pool.
//
// [Open] and [New] apply the embedded schema (idempotent, under an
// advisory lock so that instances starting together do not race), in the
// schema that [Options.Schema] names or else the connection's search_path.
//
// Booking is a transaction that inserts with ON CONFLICT DO NOTHING against
// a partial unique index on (expert_id, starts_at) WHERE status = 'booked':
// of two concurrent bookings of one slot, the second waits for the first to
// commit, inserts nothing, and gets booking.ErrSlotTaken. A missing row is
// pgx.ErrNoRows, which matches sql.ErrNoRows; wrap reads with
// booking.WithNotFound(pgx.ErrNoRows) so that cached "not found"s match it
// too.
package pgstore
