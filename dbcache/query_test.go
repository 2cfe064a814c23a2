package dbcache_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/dbcache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tier"
)

// l1Cache returns an L1-only cache closed when t ends.
func l1Cache[V any](t *testing.T) *tier.Cache[V] {
	t.Helper()
	c, err := tier.New(&tier.Options[V]{Name: t.Name()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type user struct {
	ID   int
	Name string
}

// usersDB is an in-memory table with a query counter.
type usersDB struct {
	rows    map[int]user
	queries atomic.Int64
	err     error // returned by every query when set
	noRows  error // returned, wrapped, for a missing row; default sql.ErrNoRows
}

func (db *usersDB) get(_ context.Context, id int) (user, error) {
	db.queries.Add(1)
	if db.err != nil {
		return user{}, db.err
	}
	u, ok := db.rows[id]
	if !ok {
		noRows := db.noRows
		if noRows == nil {
			noRows = sql.ErrNoRows
		}
		return user{}, &rowError{id: id, err: noRows}
	}
	return u, nil
}

// rowError is the error of a query of one row, as a query function might
// wrap the driver's.
type rowError struct {
	id  int
	err error
}

func (e *rowError) Error() string { return "user " + strconv.Itoa(e.id) + ": " + e.err.Error() }
func (e *rowError) Unwrap() error { return e.err }

func userKey(id int) string { return "user:" + strconv.Itoa(id) }

// proxyError has the shape of pgx.ErrNoRows (pgx v5): a sentinel of its
// own whose Unwrap is sql.ErrNoRows, so it matches sql.ErrNoRows but
// sql.ErrNoRows does not match it. The examples module, which depends on
// pgx, checks the real pgx.ErrNoRows against PostgreSQL
// (examples/profiles, examples/booking).
type proxyError struct{ msg string }

func (e *proxyError) Error() string { return e.msg }
func (e *proxyError) Unwrap() error { return sql.ErrNoRows }

var errPgxNoRows error = &proxyError{msg: "no rows in result set"}

func TestQuery_Get(t *testing.T) {
	t.Parallel()
	db := &usersDB{rows: map[int]user{1: {ID: 1, Name: "Ada"}}}
	q := dbcache.Wrap(l1Cache[user](t), userKey, db.get)

	get := q.Get // the query's own shape
	for range 3 {
		u, err := get(t.Context(), 1)
		require.NoError(t, err)
		require.Equal(t, user{ID: 1, Name: "Ada"}, u)
	}
	require.EqualValues(t, 1, db.queries.Load())
	require.Equal(t, "user:1", q.Key(1))
}

// TestQuery_Get_NotFound checks that every read of a missing row, the one
// that ran the query and the ones answered by the cached "not found",
// matches the same errors: sql.ErrNoRows, pgx.ErrNoRows (here its
// look-alike), dbcache.ErrNotFound and tier.ErrNotFound, for database/sql-
// and pgx-style queries, with no option.
func TestQuery_Get_NotFound(t *testing.T) {
	t.Parallel()
	errGone := errors.New("gone")
	tests := []struct {
		name   string
		noRows error // what the query returns, wrapped, for a missing row
		opts   []dbcache.Option
		match  []error // every read matches each
	}{
		{name: "database/sql", noRows: sql.ErrNoRows,
			match: []error{sql.ErrNoRows, errPgxNoRows, dbcache.ErrNotFound, tier.ErrNotFound}},
		{name: "pgx", noRows: errPgxNoRows,
			match: []error{sql.ErrNoRows, errPgxNoRows, dbcache.ErrNotFound, tier.ErrNotFound}},
		{name: "tier.ErrNotFound", noRows: tier.ErrNotFound,
			match: []error{sql.ErrNoRows, errPgxNoRows, dbcache.ErrNotFound, tier.ErrNotFound}},
		{name: "WithNotFound", noRows: errGone, opts: []dbcache.Option{dbcache.WithNotFound(errGone)},
			match: []error{errGone, dbcache.ErrNotFound, tier.ErrNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := &usersDB{noRows: tt.noRows}
			q := dbcache.Wrap(l1Cache[user](t), userKey, db.get, tt.opts...)
			for i := range 4 {
				u, err := q.Get(t.Context(), 2)
				require.Zero(t, u)
				for _, target := range tt.match {
					require.ErrorIs(t, err, target, "read %d", i)
				}
				require.NotErrorIs(t, err, tier.ErrL2)
				if i == 0 {
					var re *rowError
					require.ErrorAs(t, err, &re, "the read that ran the query also matches its own error")
					require.Equal(t, re.Error(), err.Error())
				}
			}
			require.EqualValues(t, 1, db.queries.Load(), "the later reads are answered by the cached \"not found\"")
		})
	}
}

// TestQuery_Get_NotFoundFromL2 checks that a "not found" that another
// instance cached in L2 (which never saw the query's error) matches the
// same errors.
func TestQuery_Get_NotFoundFromL2(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ns := "t-" + strings.ReplaceAll(t.Name(), "/", "-")
	newCache := func() *tier.Cache[user] {
		// A generous L2Timeout: the test waits for an L2 write, which a
		// loaded machine can delay past the default.
		c, err := tier.New(&tier.Options[user]{Name: ns, Namespace: ns, L2: goredis.Must(srv.Client(t), nil), L2Timeout: 5 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	db := &usersDB{noRows: errPgxNoRows}
	cb := newCache()
	a, b := dbcache.Wrap(newCache(), userKey, db.get), dbcache.Wrap(cb, userKey, db.get)
	probe := newCache()

	_, err := a.Get(t.Context(), 404)
	require.ErrorIs(t, err, errPgxNoRows)
	require.Eventually(t, func() bool { // A writes the "not found" to L2 after answering
		_, err := probe.Get(t.Context(), userKey(404))
		return errors.Is(err, tier.ErrNotFound) && probe.Stats().NegativeHits > 0
	}, 5*time.Second, time.Millisecond)
	for i := range 2 { // from L2, then from B's L1
		_, err := b.Get(t.Context(), 404)
		for _, target := range []error{sql.ErrNoRows, errPgxNoRows, dbcache.ErrNotFound} {
			require.ErrorIs(t, err, target, "read %d on B", i)
		}
	}
	require.EqualValues(t, 1, db.queries.Load(), "B's reads are answered by the cached \"not found\"")
	require.Zero(t, cb.Stats().Loads)
}

func TestQuery_Get_ErrorNotCached(t *testing.T) {
	t.Parallel()
	errDown := errors.New("connection refused")
	db := &usersDB{rows: map[int]user{1: {ID: 1}}, err: errDown}
	q := dbcache.Wrap(l1Cache[user](t), userKey, db.get)
	_, err := q.Get(t.Context(), 1)
	require.ErrorIs(t, err, errDown)
	require.NotErrorIs(t, err, sql.ErrNoRows)
	require.NotErrorIs(t, err, dbcache.ErrNotFound)

	db.err = nil
	u, err := q.Get(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, 1, u.ID)
	require.EqualValues(t, 2, db.queries.Load())
}

func TestWrap_WithNotFound(t *testing.T) {
	t.Parallel()
	// With another sentinel, sql.ErrNoRows is an error like any other:
	// returned and not cached.
	errGone := errors.New("gone")
	db := &usersDB{}
	q := dbcache.Wrap(l1Cache[user](t), userKey, db.get, dbcache.WithNotFound(errGone))
	for range 2 {
		_, err := q.Get(t.Context(), 1)
		require.ErrorIs(t, err, sql.ErrNoRows)
		require.NotErrorIs(t, err, dbcache.ErrNotFound)
	}
	require.EqualValues(t, 2, db.queries.Load())
}

func TestWrap_NilArguments(t *testing.T) {
	t.Parallel()
	c := l1Cache[user](t)
	db := &usersDB{}
	require.Panics(t, func() { dbcache.Wrap(nil, userKey, db.get) })
	require.Panics(t, func() { dbcache.Wrap(c, nil, db.get) })
	require.Panics(t, func() { dbcache.Wrap[int, user](c, userKey, nil) })
}

func TestQuery_PeekForget(t *testing.T) {
	t.Parallel()
	db := &usersDB{rows: map[int]user{1: {ID: 1, Name: "Ada"}, 2: {ID: 2, Name: "Alan"}}}
	c := l1Cache[user](t)
	q := dbcache.Wrap(c, userKey, db.get)

	_, ok := q.Peek(1)
	require.False(t, ok, "Peek never runs the query")
	require.Zero(t, db.queries.Load())
	for _, id := range []int{1, 2} {
		_, err := q.Get(t.Context(), id)
		require.NoError(t, err)
	}
	// L1 applies writes asynchronously (ristretto): Peek sees the value
	// once the write is visible, without running the query again.
	var u user
	require.Eventually(t, func() bool { u, ok = q.Peek(1); return ok }, 5*time.Second, time.Millisecond)
	require.Equal(t, "Ada", u.Name)
	require.EqualValues(t, 2, db.queries.Load())

	db.rows[1] = user{ID: 1, Name: "Ada Lovelace"}
	db.rows[2] = user{ID: 2, Name: "Alan Turing"}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the write has happened: a cancelled caller does not stop the invalidation
	require.NoError(t, q.Forget(ctx, 1, 2))
	_, ok = q.Peek(1)
	require.False(t, ok)
	for id, name := range map[int]string{1: "Ada Lovelace", 2: "Alan Turing"} {
		u, err := q.Get(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, name, u.Name)
	}
	require.EqualValues(t, 4, db.queries.Load())
	require.NoError(t, q.Forget(t.Context()))

	// A cached "not found" is absent for Peek.
	_, err := q.Get(t.Context(), 3)
	require.ErrorIs(t, err, sql.ErrNoRows)
	_, ok = q.Peek(3)
	require.False(t, ok)
}

func TestWrapList(t *testing.T) {
	t.Parallel()
	var queries atomic.Int64
	list := dbcache.WrapList(l1Cache[[]user](t),
		func(team string) string { return "team:" + team },
		func(team string) []string { return []string{"team:" + team} },
		func(_ context.Context, team string) ([]user, error) {
			queries.Add(1)
			if team == "empty" {
				return nil, nil
			}
			return []user{{ID: 1, Name: team}}, nil
		})
	for range 2 {
		l, err := list.Get(t.Context(), "empty")
		require.NoError(t, err)
		require.NotNil(t, l)
		require.Empty(t, l)
		l, err = list.Get(t.Context(), "a")
		require.NoError(t, err)
		require.Equal(t, []user{{ID: 1, Name: "a"}}, l)
	}
	// L1 applies its writes asynchronously (ristretto buffers them): Peek
	// sees the cached empty list once it has, as in TestQuery_PeekForget.
	var l []user
	require.Eventually(t, func() bool {
		var ok bool
		l, ok = list.Peek("empty")
		return ok
	}, 5*time.Second, time.Millisecond)
	require.NotNil(t, l)
	require.EqualValues(t, 2, queries.Load())
}

func TestWrapTagged(t *testing.T) {
	t.Parallel()
	var queries atomic.Int64
	c := l1Cache[[]user](t)
	members := dbcache.WrapTagged(c,
		func(team string) string { return "team:" + team },
		func(team string) []string { return []string{"team:" + team} },
		func(_ context.Context, team string) ([]user, error) {
			queries.Add(1)
			return []user{{ID: int(queries.Load()), Name: team}}, nil
		})
	first, err := members.Get(t.Context(), "a")
	require.NoError(t, err)
	require.NoError(t, dbcache.Invalidate(t.Context(), dbcache.Invalidation{Cache: c, Tags: []string{"team:a"}}))
	again, err := members.Get(t.Context(), "a")
	require.NoError(t, err)
	require.NotEqual(t, first, again, "the tag invalidation made the list a miss")
	require.EqualValues(t, 2, queries.Load())
}

func TestWrapWrite(t *testing.T) {
	t.Parallel()
	db := &usersDB{rows: map[int]user{1: {ID: 1, Name: "Ada"}}}
	q := dbcache.Wrap(l1Cache[user](t), userKey, db.get)
	errConflict := errors.New("conflict")
	rename := dbcache.WrapWrite(
		func(_ context.Context, u user) (user, error) {
			if u.Name == "" {
				return user{}, errConflict
			}
			db.rows[u.ID] = u
			return u, nil
		},
		func(u user, _ user) []dbcache.Invalidation {
			return []dbcache.Invalidation{q.Invalidation(u.ID)}
		})

	_, err := q.Get(t.Context(), 1)
	require.NoError(t, err)

	// A failed write invalidates nothing and returns its error as is.
	_, err = rename(t.Context(), user{ID: 1})
	require.Same(t, errConflict, err) //nolint:errorlint // returned unchanged
	u, err := q.Get(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, "Ada", u.Name)
	require.EqualValues(t, 1, db.queries.Load())

	got, err := rename(t.Context(), user{ID: 1, Name: "Grace"})
	require.NoError(t, err)
	require.Equal(t, "Grace", got.Name)
	u, err = q.Get(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, "Grace", u.Name)
	require.EqualValues(t, 2, db.queries.Load())
}

// failingCache is a dbcache.Cache whose invalidations fail as a cache
// whose Redis is down does.
type failingCache struct{ deletes, tags atomic.Int64 }

func (f *failingCache) Delete(context.Context, ...string) error {
	f.deletes.Add(1)
	return fmt.Errorf("tier: delete: %w", tier.ErrL2)
}

func (f *failingCache) InvalidateTags(context.Context, ...string) error {
	f.tags.Add(1)
	return fmt.Errorf("tier: invalidate tags: %w", tier.ErrL2)
}

func TestInvalidate(t *testing.T) {
	t.Parallel()
	c := l1Cache[user](t)
	require.NoError(t, c.Set(t.Context(), "a", user{ID: 1}, 0))
	f := &failingCache{}

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the write has happened: a cancelled caller does not stop the invalidation
	err := dbcache.Invalidate(ctx,
		dbcache.Invalidation{Cache: f, Keys: []string{"x"}, Tags: []string{"t"}},
		dbcache.Invalidation{Cache: c, Keys: []string{"a"}},
	)
	require.ErrorIs(t, err, dbcache.ErrInvalidate)
	require.ErrorIs(t, err, tier.ErrL2)
	require.EqualValues(t, 1, f.deletes.Load())
	require.EqualValues(t, 1, f.tags.Load())
	_, ok := c.GetIfPresent("a")
	require.False(t, ok, "the failure of one cache does not stop the others")

	require.NoError(t, dbcache.Invalidate(t.Context()))
	require.NoError(t, dbcache.Invalidate(t.Context(), dbcache.Invalidation{Cache: c}))
}
