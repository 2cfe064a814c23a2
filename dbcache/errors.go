package dbcache

import (
	"errors"

	"github.com/tiercache/tiercache/tier"
)

var (
	// ErrNotFound is matched (errors.Is) by the error of every read through
	// a [Query] that found no row, whether the query itself said so or a
	// cached "not found" answered. It is [tier.ErrNotFound] itself.
	ErrNotFound = tier.ErrNotFound
	// ErrInvalidate is matched by the error of a write that succeeded but
	// whose cache invalidation failed (see [Invalidate]). The write's
	// result is valid; the error also matches the cache's own error, for
	// example tier.ErrL2.
	ErrInvalidate = errors.New("dbcache: cache invalidation failed")
)

// notFoundError is the error of a read through a Query that found no row.
// The same error answers the read that ran the query and the later reads
// answered by the cached "not found" (from L1, or from L2 on another
// instance, which never saw the query's error), so that errors.Is gives the
// same answer for both.
type notFoundError struct {
	// err is the query's own error, for the callers of the load that met
	// it; nil for a read answered by a cached "not found".
	err error
	// sentinel is the query's "no rows" error (see WithNotFound).
	sentinel error
}

func (e *notFoundError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return e.sentinel.Error()
}

// Unwrap returns the query's error, else the sentinel, so that errors.As
// finds the query's own error types on the read that ran it.
func (e *notFoundError) Unwrap() error {
	if e.err != nil {
		return e.err
	}
	return e.sentinel
}

// Is reports whether target is a "not found" that e stands for:
// tier.ErrNotFound, the sentinel, or an error that matches the sentinel.
// The last makes a read match pgx.ErrNoRows (which wraps sql.ErrNoRows)
// whichever tier answered, without this package importing pgx.
func (e *notFoundError) Is(target error) bool {
	return target == tier.ErrNotFound || errors.Is(target, e.sentinel) //nolint:errorlint // target is a sentinel, compared as errors.Is does
}

// loadNotFound marks a query's "no rows" error for the cache: it matches
// tier.ErrNotFound, so the cache stores a negative entry, and keeps the
// query's error for the callers of that load.
type loadNotFound struct{ err error }

func (e *loadNotFound) Error() string { return e.err.Error() }

func (e *loadNotFound) Unwrap() []error { return []error{tier.ErrNotFound, e.err} }
