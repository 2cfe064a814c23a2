// Package breaker is a consecutive-failures circuit breaker with one probe
// in the half-open state, shared by tiercache's primitives (the cache keeps
// one per L2 shard; rate limits and the other primitives that stand on the
// same Redis use it too).
//
// It is ours rather than sony/gobreaker because the closed state, the only
// one on a hot path, costs one atomic load here, where gobreaker takes a
// mutex twice per call; nothing else gobreaker offers is needed.
//
//	b := breaker.New(breaker.Options{Failures: 5, Cooldown: 5 * time.Second})
//	if !b.Allow() {
//		return errOpen // skip the call
//	}
//	if err := call(); err != nil {
//		b.Failure()
//	} else {
//		b.Success()
//	}
package breaker
