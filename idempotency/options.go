package idempotency

import (
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/primopts"
)

// Defaults of [Options].
const (
	DefaultNamespace        = "idem"
	DefaultLease            = 15 * time.Second
	DefaultRetention        = 24 * time.Hour
	DefaultTimeout          = time.Second
	DefaultMaxResultBytes   = 1 << 20
	DefaultL1MaxBytes       = 16 << 20
	DefaultMaxPending       = 1000
	DefaultCompleteDeadline = 10 * time.Minute
	// MaxKeyBytes is the longest idempotency key accepted (Stripe's limit).
	MaxKeyBytes = 255
)

// Options configures a [Store]. New copies it; later changes have no effect.
type Options struct {
	// Client is the Redis client; the Store never closes it. It must bound
	// its calls by context deadlines (ContextTimeoutEnabled in its options),
	// or a stopped Redis would hold requests for its ReadTimeout. Required.
	Client redis.UniversalClient
	// Name names the store in telemetry. Default: Namespace.
	Name string
	// Namespace prefixes every key ("<Namespace>:{<hash>}"). It may not
	// contain control characters, '{' or '}'. Default: "idem".
	Namespace string
	// Secret, when set, keys the hash that turns a (scope, key) pair into
	// a Redis key (HMAC-SHA256 instead of SHA-256), so that a reader of
	// Redis cannot confirm a guessed key. Use the same secret on every
	// instance. Default: none.
	Secret []byte

	// Lease is how long an attempt owns a record without a heartbeat; a
	// request that finds an expired lease takes the record over. It bounds
	// how long retries wait (409) after the owner's process died. Default:
	// 15 seconds.
	Lease time.Duration
	// Heartbeat is how often a running attempt extends its lease (the
	// middleware and [Attempt.Keep] do it). It must be shorter than Lease.
	// Default: Lease/3.
	Heartbeat time.Duration
	// Retention is how long a finished record is kept after it completes
	// (and how long an abandoned one is kept past its lease): retries
	// within it are replayed, after it the key is new again. The middleware
	// publishes it in the Idempotency-Retention response header. Default:
	// 24 hours, as Stripe.
	Retention time.Duration

	// Timeout bounds every Redis call. Default: 1 second.
	Timeout time.Duration
	// Breaker guards the Redis call that starts a request (Begin): after
	// Redis failed several times in a row, requests fail closed at once
	// (503) instead of each waiting for Timeout, and one probe at a time
	// finds out whether Redis is back. An attempt's own calls (heartbeats,
	// completion) always try: they keep a running request's record right.
	// Default: NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown),
	// 5 failures and 5 seconds; NoBreaker turns it off.
	Breaker   Breaker
	NoBreaker bool

	// Codec encodes recorded results inside the cache's envelope. Default:
	// codec.Msgpack().
	Codec codec.Codec
	// MaxResultBytes refuses to record larger encoded results. Default:
	// 1 MiB.
	MaxResultBytes int

	// L1MaxBytes bounds the in-process copies of completed records that
	// answer replays on this instance without a round trip. Completed
	// records never change, so the copies cannot go stale; they expire with
	// the record. Default: 16 MiB.
	L1MaxBytes int64
	// NoL1 turns those copies off.
	NoL1 bool

	// MaxPendingCompletions bounds the completions that could not reach
	// Redis and are retried in the background (see [Attempt.Complete]).
	// Past it a completion is dropped and counted (EventCompleteDropped).
	// Default: 1000.
	MaxPendingCompletions int
	// CompleteDeadline is how long such a completion is retried before it
	// is given up (EventCompleteDropped). Default: 10 minutes.
	CompleteDeadline time.Duration

	// AllowEvictingRedis skips the check, made by New, that every Redis
	// master has maxmemory-policy noeviction.
	//
	// WARNING: under any other policy Redis deletes keys that have a TTL
	// when it runs out of memory, and every record here has one. A record
	// evicted while its request runs lets a retry run the request again
	// (a second booking, a second charge); one evicted after it completed
	// turns the next retry into a new request. Set this only if the
	// policy cannot be read (a managed Redis that refuses CONFIG GET) and
	// you know it is noeviction, or for a disposable test server.
	AllowEvictingRedis bool

	// Observer receives what the store does. Default: NoopObserver. It is
	// called synchronously, sometimes while a record's queued completion
	// is being written: it must not call Begin for a key of its own event
	// (that Begin would wait for the write it is part of).
	Observer Observer

	// OnEvent, if set, is called synchronously after Observer with every
	// event, under the same rule. Tests use it to wait for background work
	// without sleeping.
	OnEvent func(Event)
}

func (o *Options) withDefaults() (Options, error) {
	c := primopts.Copy(o)
	bad := func(format string, a ...any) (Options, error) {
		return c, primopts.Invalid(ErrInvalidOptions, format, a...)
	}
	if why := primopts.Names(c.Client, &c.Namespace, &c.Name, DefaultNamespace); why != "" {
		return bad("%s", why)
	}
	if why := primopts.Defaults(
		primopts.Field[time.Duration]{Name: "Lease", V: &c.Lease, Def: DefaultLease},
		primopts.Field[time.Duration]{Name: "Retention", V: &c.Retention, Def: DefaultRetention},
		primopts.Field[time.Duration]{Name: "Timeout", V: &c.Timeout, Def: DefaultTimeout},
		primopts.Field[time.Duration]{Name: "CompleteDeadline", V: &c.CompleteDeadline, Def: DefaultCompleteDeadline},
		primopts.Field[time.Duration]{Name: "Heartbeat", V: &c.Heartbeat},
	); why != "" {
		return bad("%s", why)
	}
	if c.Lease < time.Millisecond || c.Retention < time.Millisecond {
		return bad("Lease and Retention must be at least 1ms")
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = c.Lease / 3
	}
	if c.Heartbeat >= c.Lease {
		return bad("Heartbeat %v is not shorter than Lease %v", c.Heartbeat, c.Lease)
	}
	if why := primopts.Defaults(
		primopts.Field[int]{Name: "MaxResultBytes", V: &c.MaxResultBytes, Def: DefaultMaxResultBytes},
		primopts.Field[int]{Name: "MaxPendingCompletions", V: &c.MaxPendingCompletions, Def: DefaultMaxPending},
	); why != "" {
		return bad("%s", why)
	}
	if why := primopts.Defaults(primopts.Field[int64]{Name: "L1MaxBytes", V: &c.L1MaxBytes, Def: DefaultL1MaxBytes}); why != "" {
		return bad("%s", why)
	}
	if c.Codec == nil {
		c.Codec = codec.Msgpack()
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	c.Breaker = primopts.Breaker(c.NoBreaker, c.Breaker, func() Breaker { return NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown) })
	c.Secret = append([]byte(nil), c.Secret...)
	return c, nil
}
