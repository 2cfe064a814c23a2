package dbcache

import (
	"database/sql"
	"errors"

	"github.com/tiercache/tiercache/tier"
)

// Option configures [Wrap], [WrapTagged] and [WrapList].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	notFound error // never nil
}

func newConfig(opts []Option) config {
	c := config{notFound: sql.ErrNoRows}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithNotFound sets the error by which the query reports that no row
// matched, for queries that use neither database/sql's nor pgx's (a query
// error that matches it with errors.Is is cached as a "not found"). A nil
// err keeps the default.
//
// The default, sql.ErrNoRows, needs no option with database/sql, with pgx
// (pgx.ErrNoRows wraps sql.ErrNoRows) and with the code sqlc generates for
// either. A query error matching [ErrNotFound] is a "not found" whatever
// the option. Default: sql.ErrNoRows.
func WithNotFound(err error) Option {
	return optionFunc(func(c *config) {
		if err != nil {
			c.notFound = err
		}
	})
}

func (c *config) isNotFound(err error) bool {
	return errors.Is(err, c.notFound) || errors.Is(err, tier.ErrNotFound)
}
