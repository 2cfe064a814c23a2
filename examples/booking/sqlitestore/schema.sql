-- Schema of the booking domain for SQLite. Applied on every Open; every
-- statement is idempotent. Times are unix seconds (UTC).

CREATE TABLE IF NOT EXISTS profiles (
	id         INTEGER PRIMARY KEY,
	email      TEXT    NOT NULL UNIQUE,
	name       TEXT    NOT NULL,
	bio        TEXT    NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS experts (
	id         INTEGER PRIMARY KEY,
	profile_id INTEGER NOT NULL REFERENCES profiles (id),
	specialty  TEXT    NOT NULL,
	rate_cents INTEGER NOT NULL CHECK (rate_cents >= 0),
	created_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS experts_specialty ON experts (specialty, id);

CREATE TABLE IF NOT EXISTS appointments (
	id         INTEGER PRIMARY KEY,
	expert_id  INTEGER NOT NULL REFERENCES experts (id),
	guest_id   INTEGER NOT NULL REFERENCES profiles (id),
	starts_at  INTEGER NOT NULL,
	status     TEXT    NOT NULL CHECK (status IN ('booked', 'cancelled')),
	created_at INTEGER NOT NULL
);

-- One booked appointment per expert and start time: the constraint that
-- makes booking atomic. Cancelled appointments do not hold their slot.
CREATE UNIQUE INDEX IF NOT EXISTS appointments_booked_slot
	ON appointments (expert_id, starts_at) WHERE status = 'booked';

CREATE INDEX IF NOT EXISTS appointments_guest_upcoming
	ON appointments (guest_id, starts_at) WHERE status = 'booked';
