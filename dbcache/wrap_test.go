package dbcache_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/dbcache"
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
}

func (db *usersDB) get(_ context.Context, id int) (user, error) {
	db.queries.Add(1)
	if db.err != nil {
		return user{}, db.err
	}
	u, ok := db.rows[id]
	if !ok {
		return user{}, fmt.Errorf("user %d: %w", id, sql.ErrNoRows)
	}
	return u, nil
}

func userKey(id int) string { return "user:" + strconv.Itoa(id) }

func TestWrap(t *testing.T) {
	t.Parallel()
	db := &usersDB{rows: map[int]user{1: {ID: 1, Name: "Ada"}}}
	get := dbcache.Wrap(l1Cache[user](t), userKey, db.get)

	for range 3 {
		u, err := get(t.Context(), 1)
		require.NoError(t, err)
		require.Equal(t, user{ID: 1, Name: "Ada"}, u)
	}
	require.EqualValues(t, 1, db.queries.Load())

	// Not found: the callers of the load that met it get the query's own
	// error; a read answered by the cached negative entry gets the
	// sentinel (see TestCachedRepository_ReadsMatchRepository for one
	// answered from L2 by another instance).
	_, want := db.get(t.Context(), 2)
	_, err := get(t.Context(), 2)
	require.Equal(t, want, err)
	for range 3 {
		_, err = get(t.Context(), 2)
		if err.Error() != want.Error() {
			require.Same(t, sql.ErrNoRows, err) //nolint:errorlint // the exact sentinel is the contract
		}
	}
	require.EqualValues(t, 3, db.queries.Load(), "the later reads are answered by the cache")
}

func TestWrap_WithNotFound(t *testing.T) {
	t.Parallel()
	errGone := errors.New("gone")
	db := &usersDB{err: errGone}
	get := dbcache.Wrap(l1Cache[user](t), userKey, db.get, dbcache.WithNotFound(errGone))
	for range 2 {
		_, err := get(t.Context(), 1)
		require.Same(t, errGone, err) //nolint:errorlint // the exact sentinel is the contract
	}
	require.EqualValues(t, 1, db.queries.Load(), "the second read is a cached negative entry")

	// sql.ErrNoRows is no longer "not found" for this wrapper: it is an
	// error, returned and not cached.
	db2 := &usersDB{}
	get2 := dbcache.Wrap(l1Cache[user](t), userKey, db2.get, dbcache.WithNotFound(errGone))
	for range 2 {
		_, err := get2(t.Context(), 1)
		require.ErrorIs(t, err, sql.ErrNoRows)
	}
	require.EqualValues(t, 2, db2.queries.Load())
}

func TestWrap_ErrorNotCached(t *testing.T) {
	t.Parallel()
	errDown := errors.New("connection refused")
	db := &usersDB{rows: map[int]user{1: {ID: 1}}, err: errDown}
	get := dbcache.Wrap(l1Cache[user](t), userKey, db.get)
	_, err := get(t.Context(), 1)
	require.ErrorIs(t, err, errDown)
	require.NotErrorIs(t, err, sql.ErrNoRows)
	require.NotErrorIs(t, err, tier.ErrNotFound)

	db.err = nil
	u, err := get(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, 1, u.ID)
	require.EqualValues(t, 2, db.queries.Load())
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
		l, err := list(t.Context(), "empty")
		require.NoError(t, err)
		require.NotNil(t, l)
		require.Empty(t, l)
		l, err = list(t.Context(), "a")
		require.NoError(t, err)
		require.Equal(t, []user{{ID: 1, Name: "a"}}, l)
	}
	require.EqualValues(t, 2, queries.Load())
}

func TestWrapWrite(t *testing.T) {
	t.Parallel()
	db := &usersDB{rows: map[int]user{1: {ID: 1, Name: "Ada"}}}
	c := l1Cache[user](t)
	get := dbcache.Wrap(c, userKey, db.get)
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
			return []dbcache.Invalidation{{Cache: c, Keys: []string{userKey(u.ID)}}}
		})

	_, err := get(t.Context(), 1)
	require.NoError(t, err)

	// A failed write invalidates nothing and returns its error as is.
	_, err = rename(t.Context(), user{ID: 1})
	require.Same(t, errConflict, err) //nolint:errorlint // returned unchanged
	u, err := get(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, "Ada", u.Name)
	require.EqualValues(t, 1, db.queries.Load())

	got, err := rename(t.Context(), user{ID: 1, Name: "Grace"})
	require.NoError(t, err)
	require.Equal(t, "Grace", got.Name)
	u, err = get(t.Context(), 1)
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
