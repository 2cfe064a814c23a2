// Package ratelimit limits what each actor (a user, an admin, an API key)
// may do per policy, with quotas that live in Redis and are exact where
// they must be, and that keep answering when Redis does not.
//
//	l, err := ratelimit.New(&ratelimit.Options{
//		Client:      rdb, // a go-redis UniversalClient: single, Sentinel or Cluster
//		ActorSecret: secret,
//		Policies: []ratelimit.Policy{{
//			Name:      "role_changes",
//			Algorithm: ratelimit.SlidingLog,
//			Limits:    []ratelimit.Limit{ratelimit.Per(5, time.Hour)},
//			Outage:    ratelimit.FailClosed,
//		}},
//	})
//	d, err := l.Allow(ctx, "role_changes", "admin:42")
//	if err == nil && !d.Allowed { /* 429, retry in d.RetryAfter */ }
//
// Package httplimit puts it in front of net/http handlers with the IETF
// RateLimit fields, and package demo holds the booking application's
// eight endpoints as one table.
//
// # Algorithms
//
// A [Policy] declares N per window, one or several windows ("5 per hour
// and 10 per day"), and how to count:
//
//   - [SlidingLog] is exact: one sorted-set entry per admitted unit, scored
//     by Redis's clock, and a call is admitted only if every window,
//     measured back from the call's own instant, has room. No rolling
//     window ever holds more than N, and every call that fits is
//     admitted. Memory grows with the quota (a sorted-set entry, on the
//     order of 100 bytes, per unit in the longest window), so it is for security quotas, up to
//     [MaxSlidingLogLimit] per window.
//   - [SlidingWindow] is the sliding-window counter: constant memory (three
//     numbers per window), approximate. It weighs the previous fixed
//     window's count by the part of it the rolling window still covers,
//     which is exact when that window's calls were spread evenly; in the
//     worst case (the previous window's calls all in its last moments) a
//     rolling window holds up to 2N-1. It never admits more than N within
//     one fixed window.
//   - [GCRA] smooths: N per window at a steady rate, with a burst of
//     Limit.Burst at once (default N). It is not "N per window": a fresh
//     actor gets the burst, then one unit every window/N, so with the
//     default burst a rolling window can see 2N-1 (go-redis/redis_rate's
//     PerHour(5) admits 9 in the first rolling hour).
//
// A call asks for a cost n (AllowN). Every window of the policy, and of the
// policies it includes (Policy.Include, for a quota shared by several
// endpoints), is checked and consumed in one Redis script: all or
// nothing. A denied call consumes nothing, unless the policy sets
// ConsumeDenied (then an actor that keeps trying stays locked out).
//
// # On Redis
//
// Each call is one EVALSHA (the Limiter loads the script with EVAL on
// NOSCRIPT). A policy of one window with no includes, the common case,
// runs a short script written for its algorithm (GCRA and the counter:
// TIME, GET, SET; the sliding log: TIME, ZREMRANGEBYSCORE, ZCARD, ZRANGE,
// ZADD, PEXPIRE), and
// every other call the general one, which loops over keys and windows;
// both keep the same state, and the reply is a few integers read without
// boxing. The script reads the time from Redis (TIME), never from the
// client, so
// instances with drifting clocks share one timeline; every key it creates
// gets its TTL in the same script (the longest window for the log, two
// for the counter, the time until GCRA's state is empty again), so
// nothing outlives its use. The keys of one actor are
//
//	<Namespace>:{<actor hash>}:<policy>
//
// with the actor's hash as the hash tag: every policy of one actor is in
// one Cluster slot, and a call that checks a policy and those it includes
// runs as one script on Cluster too.
//
// NOTE: a call that times out (Options.Timeout) may still run on Redis
// later, when the request reaches it: it can then count units its caller
// was told were not granted (an outage decision), never the reverse.
//
// # Two tiers
//
// Like the cache, the Limiter has a tier in process memory in front of
// Redis. When Redis denies an actor, it says until when no call of that
// cost can fit (RetryAfter); until then the Limiter answers that actor
// from memory, with no round trip and no allocation ([SourceDenialCache]:
// the Decision's summary names the window that denied). This holds across
// instances: only admissions change a quota, and they only take room. A
// flood of refused requests, the usual shape of abuse, then costs neither
// Redis nor the network (see the benchmarks).
//
// When Redis cannot be reached (a failed or timed-out call, or the circuit
// breaker open after Options.BreakerFailures failures, which spares
// callers the wait), each policy's declared [OutageMode] decides:
//
//   - [Local] (the default): an in-process limiter admits at most
//     Policy.LocalShare of each quota per instance (an exact log on the
//     local clock; a conservative pair of fixed-window counts past 1024
//     units). It is kept warm: it records what Redis admitted through
//     this instance too, so an outage does not hand out a fresh share.
//   - [FailClosed]: deny (httplimit answers 503, not 429: the client is not
//     at fault).
//   - [FailOpen]: admit; only when the policy asks.
//
// A call touching several policies falls back to the strictest of their
// modes. Every fallback is counted ([Limiter.Stats]) and reported to the
// [Observer] with its reason, and no Redis error ever reaches the caller:
// AllowN returns an error only for a call that is wrong in itself (unknown
// policy, empty actor, a cost no window can ever admit) or whose own
// context ended.
//
// # Actors and telemetry
//
// The actor is any string ("admin:42", an email, an address). It is hashed
// with HMAC-SHA256 under Options.ActorSecret (the same on every instance)
// before it reaches Redis or an Observer; only process memory (the denial
// cache and the local limiter) holds it as given. The otel package's
// RateLimitObserver (tierotel.NewRateLimitObserver) counts decisions by
// policy, result and source, fallbacks by reason, and times the Redis
// round trips.
package ratelimit
