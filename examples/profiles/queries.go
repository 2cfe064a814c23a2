package profiles

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Schema creates the profiles table if it does not exist.
const Schema = `CREATE TABLE IF NOT EXISTS profiles (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	bio        text NOT NULL DEFAULT '',
	updated_at timestamptz NOT NULL DEFAULT now()
)`

// Profile is a row of the profiles table. The msgpack tags name its fields
// in the cache's L2 encoding, the json tags in the HTTP API.
type Profile struct {
	ID        int64     `json:"id"         msgpack:"id"`
	Name      string    `json:"name"       msgpack:"name"`
	Bio       string    `json:"bio"        msgpack:"bio"`
	UpdatedAt time.Time `json:"updated_at" msgpack:"updated_at"`
}

// DBTX is what the queries need of a database: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Queries are the service's queries, written as sqlc generates them for
// pgx/v5: a missing row is pgx.ErrNoRows. It is safe for concurrent use
// when its DBTX is.
type Queries struct {
	db DBTX
}

// NewQueries returns the queries run on db.
func NewQueries(db DBTX) *Queries { return &Queries{db: db} }

const getProfile = `SELECT id, name, bio, updated_at FROM profiles WHERE id = $1`

// GetProfile returns the profile id, or pgx.ErrNoRows.
func (q *Queries) GetProfile(ctx context.Context, id int64) (Profile, error) {
	var p Profile
	err := q.db.QueryRow(ctx, getProfile, id).Scan(&p.ID, &p.Name, &p.Bio, &p.UpdatedAt)
	return p, err
}

const putProfile = `INSERT INTO profiles (id, name, bio) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, bio = EXCLUDED.bio, updated_at = now()
RETURNING id, name, bio, updated_at`

// PutProfileParams are the arguments of [Queries.PutProfile].
type PutProfileParams struct {
	ID   int64
	Name string
	Bio  string
}

// PutProfile inserts or replaces a profile and returns it.
func (q *Queries) PutProfile(ctx context.Context, arg PutProfileParams) (Profile, error) {
	var p Profile
	err := q.db.QueryRow(ctx, putProfile, arg.ID, arg.Name, arg.Bio).Scan(&p.ID, &p.Name, &p.Bio, &p.UpdatedAt)
	return p, err
}

const updateProfile = `UPDATE profiles SET name = $2, bio = $3, updated_at = now() WHERE id = $1
RETURNING id, name, bio, updated_at`

// UpdateProfileParams are the arguments of [Queries.UpdateProfile].
type UpdateProfileParams struct {
	ID   int64
	Name string
	Bio  string
}

// UpdateProfile sets the name and bio of the profile arg.ID and returns
// it, or pgx.ErrNoRows.
func (q *Queries) UpdateProfile(ctx context.Context, arg UpdateProfileParams) (Profile, error) {
	var p Profile
	err := q.db.QueryRow(ctx, updateProfile, arg.ID, arg.Name, arg.Bio).Scan(&p.ID, &p.Name, &p.Bio, &p.UpdatedAt)
	return p, err
}
