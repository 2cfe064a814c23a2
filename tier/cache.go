package tier

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/backends/ristretto"
	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/coarsetime"
)

// LoadFunc loads the value of key from the origin. It returns ErrNotFound
// (or an error accepted by Options.IsNotFound) when the key has no value.
// A nil LoadFunc means "no origin": the call answers from the tiers only,
// as [Cache.Get] does.
//
// NOTE: it runs on the flight's context, not on any one caller's: it keeps
// the first caller's values (trace spans) but is cancelled only by
// Options.LoadTimeout or Close.
type LoadFunc[V any] func(ctx context.Context, key string) (V, error)

// Cache is a two-tier read-through cache of values of type V. It is safe for
// concurrent use. Create it with [New].
type Cache[V any] struct {
	o       Options[V] // immutable after New
	l1      Local[V]
	l1stats LocalStats    // nil when l1 does not count
	l2      Remote        // nil: L1 only
	leaser  Leaser        // l2 as a Leaser, or nil
	carrier WriteCarrier  // l2 as a WriteCarrier, or nil
	wq      writeQueue[V] // leased writes waiting for a round trip to carry them
	// leaseTrips is how many lease round trips a shard may have on their
	// way (maxLeaseTrips); onLeaseQueue, if set (tests), is called when a
	// miss queues for one (see leaseGroup).
	leaseTrips   int
	onLeaseQueue func()
	tagger       TagStore  // l2 as a TagStore, or nil
	pub          Publisher // nil without an Invalidator
	obs          Observer
	noObs        bool
	clock        Clock       // nil: time.Now
	epocher      Epocher     // l2 as an Epocher, or nil
	raiser       EpochRaiser // l2 as an EpochRaiser, or nil
	base         string      // "tc:<len>:<namespace>:" (keys add "<epoch>:")
	tagPfx       string
	epochK       string // the L2 key of the namespace's epoch
	tag          uint32 // the schema tag of its L2 envelopes (typeTag)

	// epoch is the namespace's current epoch and its L2 key prefix, one
	// value so that the two never disagree; never nil after New, and it
	// only moves forward. epochKnown is false until the epoch has been read
	// from L2 (L2 is not used before).
	epoch      atomic.Pointer[epochState]
	epochKnown atomic.Bool
	epochStale atomic.Bool           // re-read the epoch soon (a clear may have been missed)
	epochErr   atomic.Pointer[error] // why the last epoch read failed

	sharder Sharder  // l2 as a Sharder, or nil
	lineage Lineager // l2 as a Lineager, or nil
	// lastLineage is the last token lineage gave; the replayer's (and New's)
	// alone. "" until one was read.
	lastLineage string
	checked     time.Time // when lineage was last asked; the replayer's alone
	// lineageKnown: a lineage token was read (lastLineage != ""); from then
	// on a shard seen for the first time is held until the next check.
	lineageKnown atomic.Bool
	brs          breakers
	fl           flights[V]
	// l2Misses tells whether the first L2 round trip of a miss should be
	// the get-or-lease pipeline (more than about one L2 read in five
	// misses) or a plain read.
	l2Misses missScore
	ctr      counters
	tags     tagTimes
	out      outbox
	sem      chan struct{} // MaxConcurrentLoads slots; nil: unbounded

	// trustFloor: entries whose read began before it (Created < trustFloor)
	// are not served. Raising it drops L1 as a whole in O(1).
	trustFloor atomic.Int64
	// maxAge, when not zero, also makes entries whose read began more than
	// maxAge nanos ago misses (set while the invalidator is down).
	maxAge atomic.Int64

	l1mu     sync.RWMutex // L1 writes and waits outside flights hold it shared; Close exclusively, to close L1
	l1closed bool         // guarded by l1mu

	stop      context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	bg        sync.WaitGroup // the replayer
	hmacs     sync.Pool      // keyed HMAC-SHA256 hashers for obsKey
	// l1Last is L1's counts read by Close just before it closed L1 (the
	// store may forget them): Stats reports them from then on.
	l1Last atomic.Pointer[Stats]
}

// New returns a Cache configured by o (nil means defaults).
func New[V any](o *Options[V]) (*Cache[V], error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache[V]{o: opts, l1: opts.L1, l2: opts.L2, obs: opts.Observer, clock: opts.Clock}
	if c.l1 == nil {
		// No ristretto TTL: the cache checks Fresh and Deadline itself, and
		// ristretto's expiry check would read the clock on every Get.
		// Expired entries leave by eviction, within L1MaxCost.
		l1, err := ristretto.New[*Entry[V]](&ristretto.Options{MaxCost: opts.L1MaxCost})
		if err != nil {
			return nil, fmt.Errorf("tier: new L1: %w", err)
		}
		c.l1 = l1
	}
	c.fl.wait = c.l1.Wait
	c.fl.trusted = c.trustedCall
	c.fl.now = c.now
	c.fl.kick = make(chan struct{}, 1)
	c.l1stats, _ = c.l1.(LocalStats)
	c.leaser, _ = c.l2.(Leaser)
	if c.leaser != nil {
		c.carrier, _ = c.l2.(WriteCarrier)
	}
	c.wq.delay = carryDelay
	c.leaseTrips = maxLeaseTrips
	c.wq.timer = time.AfterFunc(time.Hour, c.flushTimer)
	c.wq.timer.Stop()
	c.tagger, _ = c.l2.(TagStore)
	c.epocher, _ = c.l2.(Epocher)
	c.raiser, _ = c.l2.(EpochRaiser)
	c.sharder, _ = c.l2.(Sharder)
	c.lineage, _ = c.l2.(Lineager)
	_, c.noObs = c.obs.(NoopObserver)
	ns := "tc:" + strconv.Itoa(len(opts.Namespace)) + ":" + opts.Namespace
	c.base = ns + ":"
	c.tagPfx = ns + "#t:" // disjoint from keys: the byte after the namespace differs
	c.epochK = ns + "#epoch"
	c.tag = typeTag[V](opts.Schema)
	c.setEpoch(0)
	c.epochKnown.Store(c.epocher == nil)
	c.tags.horizon = int64(max(opts.TTL, opts.NegativeTTL))
	c.tags.skew = int64(opts.MaxClockSkew)
	c.out.limit = opts.MaxPendingInvalidations
	c.out.kick = make(chan struct{}, 1)
	if opts.MaxConcurrentLoads > 0 {
		c.sem = make(chan struct{}, opts.MaxConcurrentLoads)
	}
	c.brs.newBreaker = func(shard string) *breaker.Breaker {
		return breaker.New(breaker.Options{
			Failures: opts.BreakerFailures,
			Cooldown: opts.BreakerCooldown,
			Now:      c.now,
			OnChange: func(from, to breaker.State) {
				if to == breaker.Open {
					c.ctr.breakerOpens.Add(1)
				}
				c.obs.Event(context.Background(), Event{Cache: opts.Name, Kind: EventBreaker, Tier: TierL2, From: BreakerState(from), To: BreakerState(to), Shard: shard})
			},
		})
	}
	c.brs.one = &shard{Breaker: c.brs.newBreaker("")}
	c.brs.now = c.now
	if c.lineage != nil {
		c.brs.hold = c.lineageKnown.Load
	}
	c.hmacs.New = func() any { return hmac.New(sha256.New, c.o.KeyHashSecret) }
	c.stop, c.cancel = context.WithCancel(context.Background())
	if opts.Invalidator != nil {
		pub, err := opts.Invalidator.Register(opts.Namespace, sink[V]{c})
		if err != nil {
			c.l1.Close()
			return nil, fmt.Errorf("tier: register with invalidator: %w", err)
		}
		c.pub = pub
	}
	if c.clock == nil {
		coarsetime.Acquire() // released in Close
	}
	if c.epocher != nil {
		c.readEpoch(c.stop) // a failure leaves L2 unused until the replayer reads it
	}
	if c.lineage != nil {
		c.checkLineage(c.stop) // the first token: what later ones are compared with
	}
	if c.l2 != nil || c.pub != nil {
		c.bg.Add(1)
		go c.replay()
	}
	if so, ok := c.obs.(StatsObserver); ok {
		so.Attach(opts.Name, c.Stats)
	}
	return c, nil
}

// Must is like [New] but panics on invalid options.
func Must[V any](o *Options[V]) *Cache[V] {
	c, err := New(o)
	if err != nil {
		panic(err)
	}
	return c
}

// Name returns Options.Name.
func (c *Cache[V]) Name() string { return c.o.Name }

// Key returns the full L2 key under which key is stored now:
// "tc:<len(namespace)>:<namespace>:<epoch>:<key>".
func (c *Cache[V]) Key(key string) string { return c.epoch.Load().pfx + key }

// TagKey returns the full L2 key under which tag's invalidation time is kept.
func (c *Cache[V]) TagKey(tag string) string { return c.tagPfx + tag }

// now is the precise time (the injected Clock's, if any).
func (c *Cache[V]) now() int64 {
	if c.clock == nil {
		return time.Now().UnixNano()
	}
	return c.clock.Now().UnixNano()
}

// hitNow is the time the L1 hit path compares freshness with: one atomic
// load instead of a clock read (time.Now costs more than the whole rest of
// a hit on some virtual machines). It may lag by about a millisecond, so an
// entry may be served that much past its fresh life; bounds that must hold
// (the invalidator's age limit) use now.
func (c *Cache[V]) hitNow() int64 {
	if c.clock == nil {
		return coarsetime.Now()
	}
	return c.clock.Now().UnixNano()
}

// GetOrLoad returns the value of key from L1, else L2, else load (once per
// key in the process, however many callers miss together), and caches it.
// It returns an error matching [ErrNotFound] when the key has no value.
// With a nil load it is [Cache.Get]: ErrNotFound when neither tier has the
// key (nothing is cached for it), an error matching [ErrL2] when L2 could
// not be asked.
//
// With Options.FailSafe, a value past its fresh life is kept and returned
// (reported as stale) when load fails, or after Options.SoftTimeout when it
// is slow. With Options.RefreshAhead, a hit late in the entry's life starts
// one background refresh.
//
// A call whose ctx has already ended starts nothing (no L2 read, no load,
// no write) and returns an error matching ctx's cause; only a fresh L1 hit
// is still answered, since it starts nothing either. The same holds for
// every method that takes a ctx, writes included: a Set or Delete with an
// ended ctx changes neither tier.
//
// NOTE: the value may be shared with other callers: do not mutate it. If the
// loader panics, every caller waiting on it panics with a [*PanicError]; if
// it calls runtime.Goexit, they get [ErrLoaderGoexit] (except a caller
// whose context can never end that started the load: the loader runs on its
// goroutine, which Goexit ends, as with x/sync/singleflight's Do). Either
// way nothing is cached and the next call loads afresh.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load LoadFunc[V]) (V, error) {
	return c.get(ctx, key, nil, load)
}

// GetOrLoadTagged is [Cache.GetOrLoad] for a value that depends on the
// entities named by tags (for example "expert:42" for a list of that
// expert's appointments): [Cache.InvalidateTags] with any of them, on any
// instance, makes the value a miss everywhere. A key must always be used
// with the same tags. An empty tag is refused with [ErrInvalidKey].
func (c *Cache[V]) GetOrLoadTagged(ctx context.Context, key string, tags []string, load LoadFunc[V]) (V, error) {
	if err := checkTags(tags); err != nil {
		var zero V
		return zero, err
	}
	return c.get(ctx, key, tags, load)
}

// get is the L1 hit path, kept small: one L1 Get, one clock read, two
// atomic loads, no allocation, no lock, no observer call. A miss goes on in
// miss (read.go).
func (c *Cache[V]) get(ctx context.Context, key string, tags []string, load LoadFunc[V]) (V, error) {
	e, ok := c.l1.Get(key)
	if !ok {
		return c.miss(ctx, key, tags, load, nil)
	}
	now := c.hitNow()
	if now >= e.Fresh || !c.trusted(e) {
		c.ctr.l1Unserved.Add(1)
		return c.miss(ctx, key, tags, load, c.staleOf(e, now))
	}
	if e.RefreshAt != 0 && now >= e.RefreshAt && load != nil {
		c.refreshAhead(ctx, key, tags, load, e)
	}
	if e.Stale {
		c.ctr.staleServed.Add(1)
	}
	if !e.Negative {
		return e.Value, nil
	}
	c.ctr.negativeHits.Add(1)
	var zero V
	return zero, ErrNotFound
}

// Get returns the value of key from L1, else L2, without loading it. It
// returns [ErrNotFound] when neither tier has it, and an error matching
// [ErrL2] (not ErrNotFound) when L1 does not have it and L2 could not be
// asked: the connection failed, the breaker is open, or the namespace's
// epoch is not known (see [Cache.InvalidateAll]). An outage is never
// reported as "absent".
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	return c.GetOrLoad(ctx, key, nil)
}

// GetIfPresent returns the value of key if L1 holds a fresh one. It never
// blocks and never leaves the process.
func (c *Cache[V]) GetIfPresent(key string) (V, bool) {
	if e, ok := c.l1Fresh(key); ok {
		if !e.Negative {
			v, _ := c.served(e)
			return v, true
		}
		c.ctr.l1Unserved.Add(1) // "not present" to this caller: not an L1 hit
	}
	var zero V
	return zero, false
}

// l1Fresh returns key's L1 entry if it may be served now; an entry found
// but not served is counted as such (it is not an L1 hit). get makes the
// same check inline, for speed.
func (c *Cache[V]) l1Fresh(key string) (*Entry[V], bool) {
	e, ok := c.l1.Get(key)
	if !ok {
		return nil, false
	}
	if !c.fresh(e) {
		c.ctr.l1Unserved.Add(1)
		return nil, false
	}
	return e, true
}

// served is the answer of an L1 hit on e, counted as get counts it.
func (c *Cache[V]) served(e *Entry[V]) (V, error) {
	if e.Stale {
		c.ctr.staleServed.Add(1)
	}
	if e.Negative {
		c.ctr.negativeHits.Add(1)
		var zero V
		return zero, ErrNotFound
	}
	return e.Value, nil
}

// ended returns the error of a call op (on key, if not "") whose context
// has already ended, and nil otherwise: such a call starts nothing (no L2
// call, no load, no write).
func (c *Cache[V]) ended(ctx context.Context, op, key string) error {
	if ctx.Err() == nil {
		return nil
	}
	if key != "" {
		op += " " + c.errKey(key)
	}
	return fmt.Errorf("tier: %s: %w", op, context.Cause(ctx))
}

// checkTags refuses an empty tag, and the reserved one.
func checkTags(tags []string) error {
	for _, t := range tags {
		switch t {
		case "":
			return fmt.Errorf("%w: empty tag", ErrInvalidKey)
		case epochTag:
			return fmt.Errorf("%w: reserved tag", ErrInvalidKey)
		}
	}
	return nil
}

func (c *Cache[V]) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > c.o.MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes, limit %d", ErrInvalidKey, len(key), c.o.MaxKeyBytes)
	}
	return nil
}

func (c *Cache[V]) cost(key string, v V, encoded int) int64 {
	if c.o.Cost != nil {
		return c.o.Cost(key, v, encoded)
	}
	return int64(encoded + len(key) + 128)
}

func (c *Cache[V]) jitter(d time.Duration) time.Duration {
	if c.o.Jitter == 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*c.o.Jitter*float64(d))
}

// DropLocal makes this instance's L1 forget every entry (in O(1), without
// walking it) and fences the running loads. L2 and other instances are not
// touched.
func (c *Cache[V]) DropLocal(ctx context.Context) {
	c.untrust(c.now()+1, ReasonDropLocal)
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	s := Stats{
		Misses:                c.ctr.misses.Load(),
		L2Hits:                c.ctr.l2Hits.Load(),
		NegativeHits:          c.ctr.negativeHits.Load(),
		Loads:                 c.ctr.loads.Load(),
		LoadErrors:            c.ctr.loadErrors.Load(),
		Fallbacks:             c.ctr.fallbacks.Load(),
		L2Errors:              c.ctr.l2Errors.Load(),
		DecodeErrors:          c.ctr.decodeErrors.Load(),
		Refused:               c.ctr.refused.Load(),
		LeaseWaits:            c.ctr.leaseWaits.Load(),
		LeaseLost:             c.ctr.leaseLost.Load(),
		PendingInvalidations:  c.out.len(),
		Replayed:              c.ctr.replayed.Load(),
		InvalidationOverflows: c.ctr.invOverflows.Load(),
		EpochMoveOwed:         c.out.owing.Load(),
		EpochMoves:            c.ctr.epochMoves.Load(),
		L2Failovers:           c.ctr.failovers.Load(),
		StaleServed:           c.ctr.staleServed.Load(),
		InvalidationsSent:     c.ctr.invSent.Load(),
		InvalidationsReceived: c.ctr.invReceived.Load(),
		Refreshes:             c.ctr.refreshes.Load(),
		Breaker:               c.brs.state(),
		BreakerOpens:          c.ctr.breakerOpens.Load(),
	}
	if last := c.l1Last.Load(); last != nil {
		s.L1Hits, s.L1SetsDropped, s.L1SetsRejected, s.L1Evicted = last.L1Hits, last.L1SetsDropped, last.L1SetsRejected, last.L1Evicted
	} else {
		c.readL1Stats(&s)
	}
	return s
}

// readL1Stats puts L1's counts in s.
func (c *Cache[V]) readL1Stats(s *Stats) {
	if ls := c.l1stats; ls != nil {
		if h, u := ls.Hits(), c.ctr.l1Unserved.Load(); h > u {
			s.L1Hits = h - u
		}
		s.L1Cost = ls.Cost()
		s.L1SetsDropped = ls.SetsDropped()
		s.L1SetsRejected = ls.SetsRejected()
		s.L1Evicted = ls.Evicted()
	}
}

func (c *Cache[V]) isClosed() bool {
	return c.stop.Err() != nil
}

// Close stops the cache: running loads are cancelled, Close waits for the
// cache's goroutines to exit (and for L2 reads in progress, at most
// L2Timeout; the leased writes still queued are sent, all within one
// L2Timeout from Close's start, even with Redis unresponsive),
// unregisters from the invalidator, then closes L1. Later
// calls return ErrClosed. Close is idempotent and always returns nil. It
// does not close the Redis client behind L2, which belongs to the caller.
//
// WARNING: invalidations still waiting for replay, and an owed epoch move,
// are dropped (they are in Stats.PendingInvalidations and
// Stats.EpochMoveOwed): after an outage, close a cache only once they are
// zero, or call InvalidateAll from another instance.
func (c *Cache[V]) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.fl.stop() // no read starts an L2 call Close would wait for
		c.closeQueue()
		c.fl.close()
		c.wq.drainCancel() // no flight is left to send a write
		c.bg.Wait()
		if c.clock == nil {
			coarsetime.Release()
		}
		if c.pub != nil {
			c.pub.Unregister()
		}
		c.l1mu.Lock()
		c.l1closed = true
		c.l1mu.Unlock()
		var last Stats
		c.readL1Stats(&last)
		c.l1Last.Store(&last)
		c.l1.Close()
	})
	return nil
}

// obsKey is the key as the observer may see it: a keyed hash (HMAC-SHA256,
// 16 hex digits) unless Options.ObserveRawKeys.
func (c *Cache[V]) obsKey(key string) string {
	if c.noObs || c.o.ObserveRawKeys || key == "" {
		return key
	}
	return c.keyHash(key)
}

// errKey is the key as a returned error names it: quoted if
// Options.ObserveRawKeys, else "key#" and the hash the observer sees, so
// that an error can be matched with its telemetry without logging
// personal data.
func (c *Cache[V]) errKey(key string) string {
	if c.o.ObserveRawKeys {
		return strconv.Quote(key)
	}
	return "key#" + c.keyHash(key)
}

// keyHash is key's keyed hash: HMAC-SHA256 under Options.KeyHashSecret,
// the first 16 hex digits.
func (c *Cache[V]) keyHash(key string) string {
	m := c.hmacs.Get().(hash.Hash)
	m.Reset() // back to the keyed state
	m.Write([]byte(key))
	var sum [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(sum[:0])[:8])
	c.hmacs.Put(m)
	return out
}
