package httplimit

import "net/http"

// Option configures a [Middleware]. The only implementations are the With*
// functions of this package.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	cost    func(*http.Request) int
	onError func(http.ResponseWriter, *http.Request, error)
}

func newConfig(opts []Option) config {
	c := config{onError: defaultOnError}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithCost sets how many units a request costs. A nil function keeps the
// default: 1.
func WithCost(cost func(*http.Request) int) Option {
	return optionFunc(func(c *config) {
		if cost != nil {
			c.cost = cost
		}
	})
}

// WithErrorHandler sets what answers a request whose actor function
// failed, whose cost the policy can never admit, or whose context ended
// before Redis answered. A Redis outage is not an error: the policy's
// outage mode answers it. A nil handler keeps the default: 400 for
// ratelimit.ErrInvalidCost, 500 otherwise, as problem+json without the
// error's text.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) Option {
	return optionFunc(func(c *config) {
		if h != nil {
			c.onError = h
		}
	})
}
