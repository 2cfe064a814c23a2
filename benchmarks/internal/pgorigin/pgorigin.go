// Package pgorigin is the database behind the miss + load and Redis-down
// workloads: a per-run PostgreSQL table of profiles, read by primary key
// through pgx, created by [Create] and dropped by [Table.Drop].
package pgorigin

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tiercache/tiercache/benchmarks/internal/fixture"
)

// EnvDSN names the variable that overrides [DefaultDSN].
const EnvDSN = "PG_DSN"

// DefaultDSN is the local test database (trust auth).
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns $PG_DSN, or DefaultDSN.
func DSN() string {
	if d := os.Getenv(EnvDSN); d != "" {
		return d
	}
	return DefaultDSN
}

// Table is a table of rows profiles, ids 1..rows. It is safe for concurrent
// use.
type Table struct {
	pool *pgxpool.Pool
	name string
	rows int64
	get  string
}

// Create connects to dsn, creates a table unique to this run and fills it
// with rows profiles.
func Create(ctx context.Context, dsn string, rows int64) (*Table, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgorigin: %w", err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgorigin: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgorigin: PostgreSQL at %s does not answer (start it, or set %s): %w", dsn, EnvDSN, err)
	}
	t := &Table{pool: pool, rows: rows, name: fmt.Sprintf("bench_profiles_%d_%d", os.Getpid(), time.Now().UnixNano())}
	t.get = "SELECT id, email, name, bio, verified, rating, tags, avatar, created_at, updated_at FROM " + t.name + " WHERE id = $1"
	_, err = pool.Exec(ctx, "CREATE UNLOGGED TABLE "+t.name+` (
		id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, bio text NOT NULL,
		verified boolean NOT NULL, rating double precision NOT NULL, tags text[] NOT NULL,
		avatar bytea NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)`)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgorigin: create table: %w", err)
	}
	src := pgx.CopyFromFunc(func() func() ([]any, error) {
		var id int64
		return func() ([]any, error) {
			if id == rows {
				return nil, nil
			}
			id++
			p := fixture.NewProfile(id)
			return []any{p.ID, p.Email, p.Name, p.Bio, p.Verified, p.Rating, p.Tags, p.Avatar, p.CreatedAt, p.UpdatedAt}, nil
		}
	}())
	cols := []string{"id", "email", "name", "bio", "verified", "rating", "tags", "avatar", "created_at", "updated_at"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{t.name}, cols, src); err != nil {
		_ = t.Drop(ctx)
		return nil, fmt.Errorf("pgorigin: fill table: %w", err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+t.name); err != nil {
		_ = t.Drop(ctx)
		return nil, fmt.Errorf("pgorigin: analyze: %w", err)
	}
	return t, nil
}

// Rows returns how many profiles the table holds.
func (t *Table) Rows() int64 { return t.rows }

// Get selects the profile of id by primary key: the bare query that is the
// floor of every miss.
func (t *Table) Get(ctx context.Context, id int64) (*fixture.Profile, error) {
	p := new(fixture.Profile)
	err := t.pool.QueryRow(ctx, t.get, id).Scan(&p.ID, &p.Email, &p.Name, &p.Bio, &p.Verified,
		&p.Rating, &p.Tags, &p.Avatar, &p.CreatedAt, &p.UpdatedAt)
	if err != nil {
		return nil, fmt.Errorf("pgorigin: get %d: %w", id, err)
	}
	return p, nil
}

// Drop drops the table and closes the pool. It is safe to call once.
func (t *Table) Drop(ctx context.Context) error {
	defer t.pool.Close()
	if _, err := t.pool.Exec(ctx, "DROP TABLE IF EXISTS "+t.name); err != nil {
		return fmt.Errorf("pgorigin: drop: %w", err)
	}
	return nil
}
