package breaker

import (
	"context"
	"errors"
	"time"
)

// Evidence is the least a call must have waited before its caller's own
// deadline ending counts as the service's failure (see [CallerLeft]).
const Evidence = 10 * time.Millisecond

// CallerLeft reports whether a call that failed after waiting waited, with
// timeout as its own limit, failed because of its caller rather than the
// service: the caller's context was cancelled, or its deadline (shorter
// than timeout) ended before the call had waited half of timeout (at
// least Evidence, at most timeout). Such a failure must not count against
// the breaker (see [Forget]): callers with short budgets would lower the
// bar for everyone, and a stall shorter than timeout, which the breaker's
// owner chose to wait out, would open it for every caller that shares it.
// The other side of the trade: callers whose budgets are all below the bar
// never open the breaker in an outage; each waits its own budget. A caller
// whose context had ended before the call must not call at all.
func CallerLeft(ctx context.Context, waited, timeout time.Duration) bool {
	err := ctx.Err()
	if err == nil {
		return false
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return waited < min(timeout, max(Evidence, timeout/2))
}

// Forget reports to b, when it can hear it (it has [Breaker.Unused]), that
// a call it allowed ended without saying anything about the service. A
// breaker of the caller's own that cannot hear it may then wait a
// cool-down for a probe that will not report.
func Forget(b any) {
	if u, ok := b.(interface{ Unused() }); ok {
		u.Unused()
	}
}
