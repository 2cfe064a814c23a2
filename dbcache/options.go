package dbcache

import (
	"database/sql"
	"errors"
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
// matched. A query error that matches it (errors.Is) is cached as a
// negative entry, and a read answered by that negative entry returns err
// itself, so the wrapped function fails the way the query does. Use
// pgx.ErrNoRows for queries run through pgx: it matches sql.ErrNoRows, but
// sql.ErrNoRows does not match it. A nil err keeps the default.
// Default: sql.ErrNoRows.
func WithNotFound(err error) Option {
	return optionFunc(func(c *config) {
		if err != nil {
			c.notFound = err
		}
	})
}

func (c *config) isNotFound(err error) bool {
	return errors.Is(err, c.notFound)
}
