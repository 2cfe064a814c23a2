// Package dbtest opens the real databases that the tests of package booking and its
// subpackages run against: SQLite in the test's temporary folder, and
// PostgreSQL (PG_DSN, default postgres://postgres@127.0.0.1:5432/test) in a
// schema of the test's own, dropped when the test ends. PostgreSQL must be
// running: a test that cannot reach it fails, it is not skipped.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tiercache/tiercache/examples/booking"
	"github.com/tiercache/tiercache/examples/booking/pgstore"
	"github.com/tiercache/tiercache/examples/booking/sqlitestore"
)

// DefaultDSN is the PostgreSQL the tests use when PG_DSN is not set.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns PG_DSN, or DefaultDSN.
func DSN() string {
	if dsn := os.Getenv("PG_DSN"); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// Store is a repository under test with what the tests need to know of it.
type Store interface {
	booking.Repository
	booking.Seeder
}

// Backend is one database implementation under test.
type Backend struct {
	Name string
	// Open returns a new, empty store that the test closes and removes.
	Open func(t testing.TB) Store
	// NotFound is the error its reads return for a missing row.
	NotFound error
}

// Backends are SQLite and PostgreSQL.
var Backends = []Backend{
	{Name: "sqlite", Open: func(t testing.TB) Store { return SQLite(t) }, NotFound: sql.ErrNoRows},
	{Name: "postgres", Open: func(t testing.TB) Store { return Postgres(t) }, NotFound: pgx.ErrNoRows},
}

// SQLite opens a new database in t's temporary folder.
func SQLite(t testing.TB) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatalf("dbtest: open SQLite: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Postgres opens a store in a new schema, dropped when t ends.
func Postgres(t testing.TB) *pgstore.Store {
	t.Helper()
	schema := Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, DSN(), &pgstore.Options{Schema: schema})
	if err != nil {
		t.Fatalf("dbtest: open PostgreSQL at %s (is it running? .ci/run starts it): %v", DSN(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := s.Pool().Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("dbtest: drop schema %s: %v", schema, err)
		}
		_ = s.Close()
	})
	return s
}

// Schema returns a new schema name, unique to this call.
func Schema(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return "dbcache_test_" + hex.EncodeToString(b[:])
}

// Small is a data set small enough for a unit test: 40 profiles, 10
// experts, 100 appointments over 3 days from today.
var Small = booking.SeedOptions{Profiles: 40, Experts: 10, Appointments: 100, Days: 3}

// Seed generates o's data set and inserts it into s.
func Seed(t testing.TB, s booking.Seeder, o booking.SeedOptions) *booking.SeedData {
	t.Helper()
	d, err := booking.GenerateSeed(&o)
	if err != nil {
		t.Fatalf("dbtest: generate seed: %v", err)
	}
	if err := s.Seed(context.Background(), d); err != nil {
		t.Fatalf("dbtest: seed: %v", err)
	}
	return d
}
