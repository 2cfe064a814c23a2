package ratelimit

import "errors"

// Errors returned by [New] and the Limiter's methods. Check them with
// errors.Is. A Redis failure is never returned: the policy's outage mode
// decides instead, and the fallback is counted and reported.
var (
	// ErrInvalidOptions: New was given options it cannot work with.
	ErrInvalidOptions = errors.New("ratelimit: invalid options")
	// ErrInvalidPolicy: a Policy given to New is not valid.
	ErrInvalidPolicy = errors.New("ratelimit: invalid policy")
	// ErrUnknownPolicy: a call named a policy New was not given.
	ErrUnknownPolicy = errors.New("ratelimit: unknown policy")
	// ErrInvalidCost: the cost is below 1, or above what one of the
	// policy's windows could ever admit (its N, or its burst for GCRA), so
	// no wait would let it through.
	ErrInvalidCost = errors.New("ratelimit: invalid cost")
	// ErrInvalidActor: the actor is empty.
	ErrInvalidActor = errors.New("ratelimit: empty actor")
	// ErrClosed: the Limiter was closed.
	ErrClosed = errors.New("ratelimit: limiter closed")
)
