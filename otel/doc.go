// Package tierotel turns what a tier.Cache does into OpenTelemetry traces
// and metrics. Import it as tierotel:
//
//	import tierotel "github.com/tiercache/tiercache/otel"
//
//	c, err := tier.New(&tier.Options[*Profile]{
//		Namespace:     "profiles",
//		L2:            goredis.Must(rdb, nil),
//		Observer:      tierotel.New(tierotel.WithTracerProvider(tp), tierotel.WithMeterProvider(mp)),
//		KeyHashSecret: secret, // the same on every instance, to correlate keys
//	})
//
// [New] returns an [Observer], the cache's tier.Observer. It takes its tracer
// and meter from the providers given with [WithTracerProvider] and
// [WithMeterProvider], or from the global ones (otel.SetTracerProvider),
// under the scope [ScopeName] at [Version].
//
// # Spans
//
// L1 hits are not traced: a span would cost more than the hit. Every
// operation that leaves L1 gets a span, a child of the span in the caller's
// context:
//
//	tiercache l2.get     cache.tier=l2      cache.hit
//	tiercache l2.lease   cache.tier=l2      cache.hit (true: a value was there, no lease taken)
//	tiercache load       cache.tier=origin  cache.load.found (false: "not found")
//	tiercache l2.set     cache.tier=l2
//	tiercache l2.delete  cache.tier=l2
//	tiercache l2.epoch   cache.tier=l2      (InvalidateAll: the namespace's next epoch; no key)
//	tiercache l2.tags    cache.tier=l2      (InvalidateTags: the tags' times; no key)
//
// Each has cache.name (tier.Options.Name) and, but for l2.epoch and
// l2.tags, cache.key.hash: the key as the
// cache hands it to observers, which is an HMAC of the key unless
// tier.Options.ObserveRawKeys is set. Values are never recorded. A miss is
// not an error. A failure sets the status to Error with the error's message
// and sets error.type ("timeout", "canceled", "corrupt", "value_too_large",
// "panic", "closed", or the error's Go type).
//
// What happens during a call becomes a span event on the span in its
// context: cache.miss, cache.fallback (cache.fallback.reason: breaker_open,
// l2_error, l2_timeout), cache.decode_error, cache.value_refused,
// cache.negative_hit, cache.l1_dropped and cache.breaker (cache.breaker.from,
// cache.breaker.to). A fallback because the breaker is open is an event on
// the caller's span (no L2 call is made); a failed L2 read is an l2.get span
// with an error status and a cache.fallback event, followed by a load span.
//
// # Metrics
//
// All carry cache.name:
//
//	tiercache.requests               counter    cache.tier, cache.result (hit, miss, error)
//	tiercache.load.duration          histogram  s, cache.load.found, error.type
//	tiercache.l2.duration            histogram  s, cache.operation (get, lease, set, delete, epoch, tags), cache.hit, error.type
//	tiercache.fallbacks              counter    cache.fallback.reason
//	tiercache.breaker.state          gauge      cache.breaker.state (1 for the current state)
//	tiercache.breaker.opens          counter
//	tiercache.l1.cost                up-down    By
//	tiercache.l1.writes.lost         counter    cache.drop.reason (buffer_full, rejected)
//	tiercache.l1.evictions           counter
//	tiercache.l1.drops               counter    cache.drop.reason (why L1 was dropped as a whole)
//	tiercache.l2.decode_errors       counter
//	tiercache.values.refused         counter
//	tiercache.invalidations.pending  up-down
//	tiercache.invalidations.replayed counter
//	tiercache.lease.waits            counter
//	tiercache.lease.lost             counter
//
// tiercache.requests with cache.tier=l1 counts reads (L1 hits and misses,
// from tier.Cache.Stats, so an L1 hit costs the Observer nothing); with l2,
// keys found in L2 (hit) and failed L2 reads (error); with origin, loader
// calls (hit: found, miss: not found, error). Counters are observable: they
// are read from the caches' Stats when the metrics are collected.
//
// # Keys and personal data
//
// Keys can hold personal data (emails, tokens). The Observer records only
// what the cache gives it, which is a keyed hash by default. The hash's key
// defaults to one derived from the namespace, so a key hashes the same on
// every instance and across restarts; that pseudonymises keys but does not
// secure them (anyone who knows the namespace can hash guesses): set
// tier.Options.KeyHashSecret, the same on every instance, where it matters. No value ever reaches the Observer, and no key is ever a metric
// attribute.
//
// WARNING: go-redis's own instrumentation (redisotel) records whole
// commands, keys and values included, unless it is given
// redisotel.WithDBStatement(false).
package tierotel
