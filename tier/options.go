package tier

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/tiercache/tiercache/codec"
)

// Defaults of [Options], each named after its field.
const (
	defaultTTL                     = 10 * time.Minute
	defaultNegativeTTL             = 30 * time.Second
	defaultJitter                  = 0.1
	defaultMaxKeyBytes             = 1024
	defaultMaxValueBytes           = 1 << 20
	defaultLoadTimeout             = 10 * time.Second
	defaultL2Timeout               = 100 * time.Millisecond
	defaultL1MaxCost               = 64 << 20
	defaultBreakerFailures         = 5
	defaultBreakerCooldown         = 5 * time.Second
	defaultLeaseWait               = 500 * time.Millisecond
	defaultMaxClockSkew            = 10 * time.Millisecond
	defaultMaxPendingInvalidations = 10000
	defaultLineageInterval         = 500 * time.Millisecond
	defaultFailSafeThrottle        = time.Second
)

// NoJitter is the [Options.Jitter] that turns jitter off (0 means the
// default).
const NoJitter = -1.0

// Clock tells the time. Tests inject a fake one.
type Clock interface {
	Now() time.Time
}

// Options configures a [Cache]. New copies it; later changes have no
// effect. A nil *Options means all defaults (an L1-only cache named
// "default").
type Options[V any] struct {
	// Name names the cache in telemetry. Default: Namespace, or "default"
	// without one.
	Name string
	// Namespace prefixes every L2 key and names the cache's invalidations;
	// it must be unique among the caches sharing a Redis, and the same on
	// every instance of one cache. It may not contain control characters,
	// '{' or '}'. It is required with an L2: New returns an error matching
	// [ErrNoNamespace] (and [ErrInvalidOptions]) without one, so that two
	// caches never share keys by default. Without an L2: Name.
	Namespace string

	// L1 is the in-process tier. The cache owns it and closes it in Close.
	// Default: a backends/ristretto cache bounded by L1MaxCost.
	L1 Local[V]
	// L1MaxCost bounds the default L1, in bytes. It also sizes the L1's
	// admission counters, which an empty cache already holds: about
	// 0.35 MiB plus 5% of L1MaxCost on the heap (3.3 MiB at the default,
	// 0.4 MiB at 1 MiB; measured by TestNew_EmptyFootprint). Default:
	// 64 MiB.
	L1MaxCost int64
	// Cost returns the L1 cost of a value in bytes; encodedSize is the size
	// of its encoding. Default: encodedSize + len(key) + 128.
	Cost func(key string, value V, encodedSize int) int64
	// L2 is the shared tier. Nil means L1 only.
	L2 Remote
	// Codec encodes values for L2 (and measures them for MaxValueBytes and
	// the default Cost). Default: codec.Msgpack().
	Codec codec.Codec
	// Schema tags every L2 value; bump it when V changes shape, and values
	// written with another schema become misses. The tag written is a
	// 32-bit hash of Schema and V's type name (package path and name,
	// pointers aside), so bytes written by a cache of another type in the
	// same namespace are misses too (counted in Stats.DecodeErrors,
	// reported as [EventDecodeError], deleted), never decoded into a zero
	// value. Renaming V, or moving it to another package, therefore makes
	// the values already in L2 misses once.
	Schema uint32
	// CompressAbove compresses L2 payloads larger than this many bytes.
	// Default: 0, never.
	CompressAbove int

	// TTL is how long a value stays fresh in L2. Default: 10 minutes.
	TTL time.Duration
	// L1TTL is how long a value stays fresh in L1; at most TTL. Default: TTL.
	L1TTL time.Duration
	// NegativeTTL is how long a "not found" is cached. Default: 30 seconds.
	NegativeTTL time.Duration
	// Jitter shortens each TTL by a random fraction in [0, Jitter) so keys
	// loaded together do not expire together; it is in [0, 1), or
	// [NoJitter] to turn it off. Default: 0.1.
	Jitter float64
	// IsNotFound reports whether a loader error means "not found" (for
	// example errors.Is(err, sql.ErrNoRows)); such errors are cached as
	// negative entries. A loader may also return ErrNotFound.
	IsNotFound func(error) bool

	// FailSafe keeps a value this long past its fresh life, to be served
	// (and reported as stale) when the origin fails or is slow, instead of
	// an error. Default: 0, off.
	FailSafe time.Duration
	// FailSafeThrottle is how long a stale value served after an origin
	// failure is served again without asking the origin, and how long the
	// error of a failing key without a stale value is shared by the callers
	// that come next: one origin attempt per key per window either way
	// (with FailSafe; a Delete or Set of the key ends the window). Default:
	// 1 second.
	FailSafeThrottle time.Duration
	// SoftTimeout: a caller that has a stale value at hand waits at most
	// this long for a load, then gets the stale value while the load goes on
	// in the background and updates the tiers when it ends. LoadTimeout
	// stays the hard timeout. Stale values exist only with FailSafe, and a
	// SoftTimeout must be shorter than LoadTimeout: New refuses it
	// otherwise. Default: 0, wait for the load.
	SoftTimeout time.Duration
	// RefreshAhead, in (0, 1), starts one background refresh per key when a
	// hit finds the entry past this fraction of its fresh life, so hot keys
	// never make a caller wait for the origin. Default: 0, off.
	RefreshAhead float64
	// MaxConcurrentLoads bounds the origin loads this cache runs at once
	// (single flight already makes it one per key); loads beyond it wait
	// for a slot, and callers with a stale value get it after SoftTimeout.
	// It keeps the database's extra load proportional to distinct keys even
	// while L2 is down. Default: 0, unbounded.
	MaxConcurrentLoads int

	// MaxKeyBytes refuses longer keys with ErrInvalidKey. Default: 1024.
	MaxKeyBytes int
	// MaxValueBytes refuses to cache values whose encoding is larger. With
	// an L2 that has a limit of its own (a [ValueLimiter], such as
	// backends/goredis, whose Options.MaxValueBytes sets it), 0 means that
	// limit and a larger value is refused by New with [ErrInvalidOptions]:
	// set the limit in one place, the backend. Default: the L2's limit, else
	// 1 MiB.
	MaxValueBytes int

	// LoadTimeout bounds one origin load. Default: 10 seconds.
	LoadTimeout time.Duration
	// L2Timeout bounds every L2 call. Default: 100 ms.
	L2Timeout time.Duration
	// BreakerFailures is how many consecutive L2 failures open the circuit
	// breaker. Default: 5.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before it lets one
	// probe through. Default: 5 seconds.
	BreakerCooldown time.Duration

	// Invalidator carries this cache's invalidations to the other
	// instances and theirs to this one (package invalidate). Nil means
	// none: other instances' L1 copies then live until their L1TTL.
	Invalidator Invalidator
	// LeaseWait bounds how long a miss waits for another instance that
	// holds the key's lease (is loading it) before loading itself. Only
	// with a [Leaser] L2. Default: 500 ms.
	LeaseWait time.Duration
	// MaxClockSkew is the clock difference allowed between instances when
	// an L2 value's creation time (the writer's clock) is compared with a
	// tag's invalidation time (the invalidator's clock): values created up
	// to this long after the invalidation are treated as older. L1 entries
	// are compared on this instance's own clock and need no allowance.
	// Default: 10 ms.
	MaxClockSkew time.Duration
	// MaxPendingInvalidations bounds the keys and tags kept for replay
	// while L2 or the invalidator cannot be reached. Nothing past it is
	// lost: the namespace then owes a move to its next epoch (reported as
	// EventEpochOwed and in Stats), this instance stops using L2 until it
	// has made the move, and it makes it as soon as L2 answers, which makes
	// every key written before unreachable and tells the other instances.
	// (With an L2 that is not an [Epocher] the L2 step of what overflows is
	// lost, and reported.) Default: 10000.
	MaxPendingInvalidations int

	// LineageInterval is how often the cache asks a [Lineager] L2 whether it
	// may have lost acknowledged writes (a failover, a restart). After a
	// change it is seen, L1 is dropped and the namespace moves to its next
	// epoch: a read between the change and the next check (at most
	// LineageInterval + L2Timeout) may still return a value an undone write
	// had replaced or deleted. Keep it well below the invalidator's bound
	// (invalidate.Options.StaleBound, 3 s by default). Default: 500 ms.
	LineageInterval time.Duration

	// Observer receives everything beyond L1 hits. Default: NoopObserver.
	Observer Observer
	// ObserveRawKeys gives the observer, and the errors the cache returns,
	// raw keys. By default the observer gets a keyed hash (HMAC-SHA256, 16
	// hex digits), because keys may hold personal data such as emails, and
	// errors name the key by the same hash ("tier: load key#<hash>: …").
	// (A loader's own error is returned wrapped as it is: the cache does
	// not rewrite what it says.)
	ObserveRawKeys bool
	// KeyHashSecret keys that hash. Default: derived from Namespace alone,
	// so a key hashes the same on every instance and across restarts, and
	// telemetry from a fleet can be correlated without configuration.
	//
	// WARNING: the default pseudonymises keys, it does not secure them:
	// whoever knows the namespace (and this package) can hash candidate
	// keys, such as a list of emails, and match them against the telemetry.
	// Where that matters, set a secret of at least 32 random bytes, the
	// same on every instance, and keep it out of the telemetry's reach.
	KeyHashSecret []byte
	// Clock tells the time. Default: the system clock.
	Clock Clock
}

// withDefaults validates o and returns a copy with the defaults filled in.
func (o *Options[V]) withDefaults() (Options[V], error) {
	var c Options[V]
	if o != nil {
		c = *o
	}
	bad := func(format string, a ...any) (Options[V], error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, a...)...)
	}
	if c.Name == "" {
		c.Name = cmp.Or(c.Namespace, "default")
	}
	if c.Namespace == "" {
		if c.L2 != nil {
			return c, fmt.Errorf("%w: %w: set Options.Namespace to a name no other cache on this Redis uses", ErrInvalidOptions, ErrNoNamespace)
		}
		c.Namespace = c.Name
	}
	if strings.ContainsAny(c.Namespace, "{}") || strings.ContainsFunc(c.Namespace, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return bad("namespace %q contains a control character, '{' or '}'", c.Namespace)
	}
	if c.Codec == nil {
		c.Codec = codec.Msgpack()
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"TTL", &c.TTL, defaultTTL},
		{"L1TTL", &c.L1TTL, 0},
		{"NegativeTTL", &c.NegativeTTL, defaultNegativeTTL},
		{"LoadTimeout", &c.LoadTimeout, defaultLoadTimeout},
		{"L2Timeout", &c.L2Timeout, defaultL2Timeout},
		{"BreakerCooldown", &c.BreakerCooldown, defaultBreakerCooldown},
		{"LeaseWait", &c.LeaseWait, defaultLeaseWait},
		{"MaxClockSkew", &c.MaxClockSkew, defaultMaxClockSkew},
		{"FailSafe", &c.FailSafe, 0},
		{"FailSafeThrottle", &c.FailSafeThrottle, defaultFailSafeThrottle},
		{"SoftTimeout", &c.SoftTimeout, 0},
		{"LineageInterval", &c.LineageInterval, defaultLineageInterval},
	}
	for _, d := range durations {
		if *d.d < 0 {
			return bad("%s is negative", d.name)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	switch {
	case c.SoftTimeout > 0 && c.FailSafe == 0:
		return bad("SoftTimeout without FailSafe: there is never a stale value to serve")
	case c.SoftTimeout >= c.LoadTimeout:
		return bad("SoftTimeout %v is not shorter than LoadTimeout %v", c.SoftTimeout, c.LoadTimeout)
	}
	if c.L1TTL == 0 || c.L1TTL > c.TTL {
		c.L1TTL = c.TTL
	}
	if c.RefreshAhead < 0 || c.RefreshAhead >= 1 {
		return bad("RefreshAhead %v is outside [0, 1)", c.RefreshAhead)
	}
	switch {
	case c.Jitter == NoJitter:
		c.Jitter = 0
	case c.Jitter < 0 || c.Jitter >= 1:
		return bad("Jitter %v is outside [0, 1) and not NoJitter", c.Jitter)
	case c.Jitter == 0:
		c.Jitter = defaultJitter
	}
	ints := []struct {
		name string
		n    *int
		def  int
	}{
		{"MaxKeyBytes", &c.MaxKeyBytes, defaultMaxKeyBytes},
		{"MaxValueBytes", &c.MaxValueBytes, defaultMaxValueBytes},
		{"BreakerFailures", &c.BreakerFailures, defaultBreakerFailures},
		{"CompressAbove", &c.CompressAbove, 0},
		{"MaxPendingInvalidations", &c.MaxPendingInvalidations, defaultMaxPendingInvalidations},
		{"MaxConcurrentLoads", &c.MaxConcurrentLoads, 0},
	}
	for _, n := range ints {
		if *n.n < 0 {
			return bad("%s is negative", n.name)
		}
		if *n.n == 0 {
			*n.n = n.def
		}
	}
	if vl, ok := c.L2.(ValueLimiter); ok {
		switch limit := vl.MaxValueBytes(); {
		case o == nil || o.MaxValueBytes == 0:
			c.MaxValueBytes = limit
		case c.MaxValueBytes > limit:
			return bad("MaxValueBytes %d is above the L2's limit %d (every reader would refuse such a value and load it again): leave it 0, and set the limit on the L2 backend", c.MaxValueBytes, limit)
		}
	}
	if c.L1MaxCost < 0 {
		return bad("L1MaxCost is negative")
	}
	if c.L1MaxCost == 0 {
		c.L1MaxCost = defaultL1MaxCost
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	if len(c.KeyHashSecret) == 0 {
		c.KeyHashSecret = []byte("tiercache key hash\x00" + c.Namespace)
	} else {
		c.KeyHashSecret = append([]byte(nil), c.KeyHashSecret...)
	}
	return c, nil
}
