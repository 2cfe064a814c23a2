package notify

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/primopts"
)

// Defaults of [Options] and [ConsumerOptions].
const (
	DefaultNamespace    = "notify"
	DefaultShards       = 16
	DefaultMaxDelay     = time.Minute
	DefaultMaxItems     = 50
	DefaultDedupTTL     = 24 * time.Hour
	DefaultMaxBuffered  = 10000
	DefaultTimeout      = time.Second
	DefaultLease        = 30 * time.Second
	DefaultPollInterval = 200 * time.Millisecond
	DefaultRetryDelay   = 10 * time.Second
	DefaultBatch        = 1000
)

// group is the consumer group of every user stream.
const group = "notify"

// Options configures a [Queue] (and the [Consumer]s made from it). New
// copies it.
type Options struct {
	// Client is the Redis client; the Queue never closes it. It must bound
	// its calls by context deadlines (ContextTimeoutEnabled). Required.
	Client redis.UniversalClient
	// Name names the queue in telemetry. Default: Namespace.
	Name string
	// Namespace prefixes every key. It may not contain control characters,
	// '{' or '}'. Default: "notify".
	Namespace string
	// Shards is the number of index shards (sorted sets of users with work
	// due) that consumers poll; on Cluster they spread over the masters.
	// Every process sharing a Namespace must use the same value.
	// Default: 16.
	Shards int

	// MaxDelay is a digest's window: the notifications of one user and
	// channel queued within MaxDelay of the first one not yet sent go out
	// as one message, MaxDelay after that first one. Default: 1 minute.
	MaxDelay time.Duration
	// MaxItems caps a digest: a window holding MaxItems notifications is
	// sent at once. 1 sends every notification on its own. Default: 50.
	MaxItems int
	// DedupTTL is how long a dedup key is remembered. Default: 24 hours.
	DedupTTL time.Duration

	// MaxBuffered is how many notifications the Queue keeps in process
	// memory while Redis cannot be reached; past it Enqueue refuses with
	// ErrBufferFull. NoBuffer refuses at once (with ErrUnavailable).
	// Default: 10000.
	MaxBuffered int
	NoBuffer    bool

	// Timeout bounds every Redis call. Default: 1 second.
	Timeout time.Duration
	// Breaker guards the Redis calls (see onetime.Options.Breaker).
	// Default: NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown);
	// NoBreaker turns it off.
	Breaker   Breaker
	NoBreaker bool

	// Observer receives what the queue and its consumers do.
	// Default: NoopObserver.
	Observer Observer
}

func (o *Options) withDefaults() (Options, error) {
	c := primopts.Copy(o)
	bad := func(format string, a ...any) (Options, error) {
		return c, primopts.Invalid(ErrInvalidOptions, format, a...)
	}
	if why := primopts.Names(c.Client, &c.Namespace, &c.Name, DefaultNamespace); why != "" {
		return bad("%s", why)
	}
	if c.Shards < 0 || c.MaxDelay < 0 || c.MaxItems < 0 || c.DedupTTL < 0 || c.MaxBuffered < 0 || c.Timeout < 0 {
		return bad("negative Shards, MaxDelay, MaxItems, DedupTTL, MaxBuffered or Timeout")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Shards, DefaultShards)
	def(&c.MaxItems, DefaultMaxItems)
	def(&c.MaxBuffered, DefaultMaxBuffered)
	defD(&c.MaxDelay, DefaultMaxDelay)
	defD(&c.DedupTTL, DefaultDedupTTL)
	defD(&c.Timeout, DefaultTimeout)
	if c.NoBuffer {
		c.MaxBuffered = 0
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	c.Breaker = primopts.Breaker(c.NoBreaker, c.Breaker, func() Breaker { return NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown) })
	return c, nil
}

// ConsumerOptions configures a [Consumer]. NewConsumer copies it.
type ConsumerOptions struct {
	// Name is the consumer's name in the streams' consumer group; unique
	// per running consumer. Default: a random name.
	Name string
	// Sender delivers the digests. Required.
	Sender Sender
	// Lease is how long a consumer may work on one user before another may
	// take the user over, with the entries the first left pending (a crashed
	// consumer's entries are reclaimed Lease after it took the user). A turn
	// that outlasts it may send a digest twice, with the same provider key.
	// Default: 30 seconds.
	Lease time.Duration
	// PollInterval is how long Run waits when no user has work due.
	// Default: 200 ms.
	PollInterval time.Duration
	// RetryDelay is how long a digest whose send failed waits before the
	// next attempt. Default: 10 seconds.
	RetryDelay time.Duration
	// Batch bounds the entries read for one user in one turn, and the users
	// claimed from a shard at once. Default: 1000.
	Batch int
	// Preferences gives the users' quiet hours: a digest ready inside them
	// is held (EventHeld) until they end. Read them through a tier cache
	// ([CachedPreferences]). If they cannot be read, the digest is held
	// for RetryDelay; if they cannot be applied (an unknown time zone), it
	// goes out and RunOnce's error says why. Nil: no quiet hours.
	Preferences PreferenceSource
	// Now, if set, replaces Redis's clock (TIME) in the consumer's
	// decisions: which users are due, which digests are ready, quiet hours.
	// Entry times stay Redis's (their stream ids). For tests that move time
	// by hand; leave it nil in production, where every instance must decide
	// on the same clock.
	Now func() time.Time
}

func (o *ConsumerOptions) withDefaults() (ConsumerOptions, error) {
	var c ConsumerOptions
	if o != nil {
		c = *o
	}
	if c.Sender == nil {
		return c, fmt.Errorf("%w: nil Sender", ErrInvalidOptions)
	}
	if c.Lease < 0 || c.PollInterval < 0 || c.RetryDelay < 0 || c.Batch < 0 {
		return c, fmt.Errorf("%w: negative Lease, PollInterval, RetryDelay or Batch", ErrInvalidOptions)
	}
	if c.Name == "" {
		c.Name = "c-" + randomID()
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	return c, nil
}
