package notify

import (
	"time"

	"github.com/tiercache/tiercache/internal/breaker"
)

// Defaults of the built-in circuit breaker (see Options.Breaker).
const (
	DefaultBreakerFailures = breaker.DefaultFailures
	DefaultBreakerCooldown = breaker.DefaultCooldown
)

var _ Breaker = (*breaker.Breaker)(nil)

// NewBreaker returns the breaker the package uses by default, the one the
// cache and the other primitives share: it opens after failures
// consecutive failures, refuses calls for cooldown, then lets one probe
// through, whose outcome closes or reopens it. Closed costs one atomic
// load.
func NewBreaker(failures int, cooldown time.Duration) Breaker {
	return breaker.New(breaker.Options{Failures: failures, Cooldown: cooldown})
}
