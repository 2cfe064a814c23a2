package counters

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/primopts"
	"github.com/tiercache/tiercache/internal/redisconf"
)

var (
	// ErrInvalidOptions is wrapped by the errors of [New] and by calls
	// given a name that cannot be a key ('{', '}', control characters).
	ErrInvalidOptions = errors.New("counters: invalid options")
	// ErrUnavailable is wrapped by every error caused by Redis being
	// unreachable, slow or refusing a call.
	ErrUnavailable = errors.New("counters: redis unavailable")
	// ErrFull is returned by [Counters.Add] and [Counters.AddUnique] when
	// Options.MaxPending cells already wait to be flushed (Redis has been
	// unreachable for long): the increment is refused, not counted.
	ErrFull = errors.New("counters: too many increments waiting for redis")
	// ErrNotReplicated is wrapped (with [ErrUnavailable]) by a flush that
	// fewer replicas than Options.WaitReplicas acknowledged in time: the
	// batch is kept and retried, and its marker makes the retry exact
	// whichever node answers it.
	ErrNotReplicated = errors.New("counters: flush not acknowledged by enough replicas")
)

// Defaults of [Options].
const (
	DefaultNamespace  = "counters"
	DefaultBucket     = time.Minute
	DefaultRetention  = 8 * 24 * time.Hour
	DefaultTimeout    = time.Second
	DefaultMaxPending = 100000
	// MaxQueryBuckets bounds the buckets one query reads.
	MaxQueryBuckets = 10000
)

// Options configures [Counters]. New copies it.
type Options struct {
	// Client is the Redis client (ContextTimeoutEnabled); never closed
	// here. Required.
	Client redis.UniversalClient
	// Namespace prefixes every key; no control characters, '{' or '}'.
	// Default: "counters".
	Namespace string
	// Bucket is the width of a time bucket. Default: 1 minute.
	Bucket time.Duration
	// Retention is how long a bucket is kept after it ends (its TTL).
	// Default: 8 days.
	Retention time.Duration
	// Timeout bounds every Redis call. Default: 1 second.
	Timeout time.Duration
	// MaxPending bounds the cells (a counter bucket, or a member of a unique
	// count's bucket) held in memory while they wait to be flushed; past it
	// Add and AddUnique refuse with ErrFull. Default: 100000.
	MaxPending int
	// Instance names this process in the flush markers; unique among the
	// running instances, and among the Counters of one process (a process
	// restarted later may reuse its name: batch numbers start at the wall
	// clock in µs; two whose lives overlap, as in a reload that starts the
	// new process before the old one's last flush, must not). Default:
	// random per New.
	Instance string
	// Now tells the time that picks an increment's bucket. Default:
	// time.Now.
	Now func() time.Time

	// Name names these counters in telemetry. Default: Namespace.
	Name string
	// Breaker guards the Redis calls: while it is open, Flush, Sum and
	// Unique fail at once with ErrUnavailable (increments keep
	// accumulating). Default: NewBreaker(DefaultBreakerFailures,
	// DefaultBreakerCooldown); NoBreaker turns it off.
	Breaker   Breaker
	NoBreaker bool
	// WaitReplicas, when positive, makes a flush wait (WAIT, on the
	// connection that wrote, within Timeout) until that many replicas have
	// its batch; a batch fewer acknowledged is kept and retried. Replication
	// is asynchronous: without it a failover can lose a batch that the
	// master acknowledged and that was never retried. With it, N increments
	// are exactly N after a master is killed and its replica promoted
	// (TestCounters_ClusterMasterKilled). Default: 0.
	WaitReplicas int
	// Observer receives what the counters do. Default: NoopObserver.
	Observer Observer
}

// Counters keeps time-bucketed counters (INCRBY) and unique counts
// (HyperLogLog, PFADD) in Redis, written from many instances. Increments
// are added in memory and written by [Counters.Flush] (run it in a loop
// with [Counters.Run]); while Redis is unreachable they accumulate, and
// they are written once it is back: never lost (within MaxPending and the
// process's life) and never twice.
//
// Never twice: a flush moves a counter's pending increments into a batch
// numbered by a per-instance, per-counter sequence, and one script applies
// the batch and records its number in a marker key in the counter's slot
// (<ns>:{<name>}:f:<instance>). A batch whose outcome is unknown (a
// timeout: it may have been applied) is retried as it is, with its number;
// the script sees the marker and skips it. New increments wait for the
// next batch. HyperLogLog adds are idempotent by themselves.
//
// It is safe for concurrent use; it starts no goroutine.
type Counters struct {
	o   Options
	rdb redis.UniversalClient

	topo *redisconf.Topology

	mu      sync.Mutex        // guards names and npending
	names   map[string]*state // guarded by mu
	pending int               // guarded by mu: cells waiting (pending and in flight)
	flushMu sync.Mutex        // one flush at a time
}

// state is one counter name's unflushed increments.
type state struct {
	seq      uint64
	deltas   map[int64]int64               // bucket start (unix ms) → delta
	uniq     map[int64]map[string]struct{} // bucket start → members
	inflight *batch
}

type batch struct {
	seq    uint64
	deltas map[int64]int64
	uniq   map[int64][]string
	cells  int
}

// New checks o and returns Counters.
func New(o *Options) (*Counters, error) {
	c := primopts.Copy(o)
	if c.Client == nil {
		return nil, fmt.Errorf("%w: nil Client", ErrInvalidOptions)
	}
	if !redisconf.ContextTimeouts(c.Client) {
		return nil, fmt.Errorf("%w: the client ignores context deadlines: set ContextTimeoutEnabled", ErrInvalidOptions)
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if err := checkName(c.Namespace); err != nil {
		return nil, err
	}
	if c.Bucket < 0 || c.Retention < 0 || c.Timeout < 0 || c.MaxPending < 0 || c.WaitReplicas < 0 {
		return nil, fmt.Errorf("%w: negative Bucket, Retention, Timeout, MaxPending or WaitReplicas", ErrInvalidOptions)
	}
	if c.Bucket == 0 {
		c.Bucket = DefaultBucket
	}
	if c.Bucket < time.Millisecond {
		return nil, fmt.Errorf("%w: Bucket %v under a millisecond", ErrInvalidOptions, c.Bucket)
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Instance = hex.EncodeToString(b[:])
	}
	if err := checkName(c.Instance); err != nil {
		return nil, err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Name == "" {
		c.Name = c.Namespace
	}
	c.Breaker = primopts.Breaker(c.NoBreaker, c.Breaker, func() Breaker { return NewBreaker(DefaultBreakerFailures, DefaultBreakerCooldown) })
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	return &Counters{o: c, rdb: c.Client, topo: redisconf.NewTopology(c.Client), names: map[string]*state{}}, nil
}

func checkName(s string) error {
	if s == "" || redisconf.BadNamespace(s) != "" {
		return fmt.Errorf("%w: name %q is empty or contains a control character, '{' or '}'", ErrInvalidOptions, s)
	}
	return nil
}

// bucketOf returns the start (unix ms) of t's bucket.
func (c *Counters) bucketOf(t time.Time) int64 {
	w := c.o.Bucket.Milliseconds()
	ms := t.UnixMilli()
	return ms - ((ms%w)+w)%w
}

// keys: every key of a counter name carries the name as its hash tag, so
// a flush of the name and a query over any range of its buckets touch one
// slot.
//
//	<ns>:{<name>}:c:<bucket ms>    counter bucket (string, INCRBY)
//	<ns>:{<name>}:u:<bucket ms>    unique-count bucket (HyperLogLog)
//	<ns>:{<name>}:f:<instance>     the instance's last applied flush
func (c *Counters) key(name, kind string, suffix string) string {
	return c.o.Namespace + ":{" + name + "}:" + kind + ":" + suffix
}

// Add adds n to counter name's bucket for now. It does not block on
// Redis. It fails only with ErrFull or ErrInvalidOptions.
func (c *Counters) Add(name string, n int64) error { return c.AddAt(name, n, c.o.Now()) }

// AddAt adds n to counter name's bucket for t (an event's own time).
func (c *Counters) AddAt(name string, n int64, t time.Time) error {
	if err := checkName(name); err != nil {
		return err
	}
	b := c.bucketOf(t)
	c.mu.Lock()
	s := c.stateLocked(name)
	if _, ok := s.deltas[b]; !ok {
		if c.pending >= c.o.MaxPending {
			c.mu.Unlock()
			return c.refused(name)
		}
		c.pending++
	}
	s.deltas[b] += n
	c.mu.Unlock()
	return nil
}

func (c *Counters) refused(name string) error {
	c.event(context.Background(), Event{Kind: EventRefused, Counter: name, Items: 1, Err: ErrFull})
	return ErrFull
}

func (c *Counters) event(ctx context.Context, e Event) {
	e.Name = c.o.Name
	c.o.Observer.Event(ctx, e)
}

// AddUnique adds member to unique count name's bucket for now.
func (c *Counters) AddUnique(name, member string) error {
	return c.AddUniqueAt(name, member, c.o.Now())
}

// AddUniqueAt adds member to unique count name's bucket for t.
func (c *Counters) AddUniqueAt(name, member string, t time.Time) error {
	if err := checkName(name); err != nil {
		return err
	}
	b := c.bucketOf(t)
	c.mu.Lock()
	s := c.stateLocked(name)
	m := s.uniq[b]
	if m == nil {
		m = map[string]struct{}{}
		s.uniq[b] = m
	}
	if _, ok := m[member]; !ok {
		if c.pending >= c.o.MaxPending {
			c.mu.Unlock()
			return c.refused(name)
		}
		c.pending++
		m[member] = struct{}{}
	}
	c.mu.Unlock()
	return nil
}

func (c *Counters) stateLocked(name string) *state {
	s := c.names[name]
	if s == nil {
		// The sequence starts at the wall clock in µs (exact in Lua's
		// doubles, unlike ns): above any batch number an earlier process of
		// the same Instance name gave (it made fewer flushes than µs passed
		// since it started), whose marker would otherwise make this one's
		// first batches look applied, and skip them.
		s = &state{seq: uint64(time.Now().UnixMicro()), deltas: map[int64]int64{}, uniq: map[int64]map[string]struct{}{}}
		c.names[name] = s
	}
	return s
}

// Pending returns how many cells wait to be flushed.
func (c *Counters) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}

// Flush writes every counter's increments to Redis; it returns the
// failures joined (each wrapping ErrUnavailable), and what failed stays
// for the next Flush.
func (c *Counters) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	names := make([]string, 0, len(c.names))
	for name := range c.names {
		names = append(names, name)
	}
	c.mu.Unlock()
	var errs []error
	for _, name := range names {
		// At most two batches: the one left in flight by a failed flush,
		// then what was added since.
		for range 2 {
			b := c.next(name)
			if b == nil {
				break
			}
			if err := c.apply(ctx, name, b); err != nil {
				errs = append(errs, fmt.Errorf("counters: flush %s: %w", name, err))
				break
			}
			c.mu.Lock()
			c.names[name].inflight = nil
			c.pending -= b.cells
			c.mu.Unlock()
			c.event(ctx, Event{Kind: EventFlushed, Counter: name, Items: b.cells})
		}
	}
	return errors.Join(errs...)
}

// next returns name's batch in flight, or makes one of its pending
// increments; nil if there is nothing to write.
func (c *Counters) next(name string) *batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.names[name]
	if s.inflight != nil || len(s.deltas) == 0 && len(s.uniq) == 0 {
		return s.inflight
	}
	s.seq++
	b := &batch{seq: s.seq, deltas: s.deltas, uniq: map[int64][]string{}}
	b.cells = len(s.deltas)
	for k, m := range s.uniq {
		for mem := range m {
			b.uniq[k] = append(b.uniq[k], mem)
		}
		b.cells += len(m)
	}
	s.inflight = b
	s.deltas, s.uniq = map[int64]int64{}, map[int64]map[string]struct{}{}
	return b
}

// uniqueChunk bounds the members of one PFADD.
const uniqueChunk = 1000

// flushScript applies one batch unless the instance's marker says it was.
// A bucket that holds anything but an integer INCRBY takes (bad bytes,
// another type, a leading zero or "-0", which INCRBY refuses, or over 17
// digits, near int64's end) is deleted first: a script is not rolled back,
// so an INCRBY failing halfway would leave the earlier buckets incremented
// without the marker, and every retry would add them again. A marker that
// is not a number of at most 16 digits below 2^53 (where Lua's doubles
// stop being exact) is read as none (Lua's tonumber reads "inf" and
// "1e20" too).
//
// One instance numbers its batches upwards and sends one only once the one
// before it is applied, so a marker equal to the batch's number means this
// batch was applied (a retry after an unknown outcome) and a higher one is
// never this instance's own doing: the script applies nothing and returns
// the marker, and the client renumbers the batch above it. Skipped, such
// batches were lost without an error until the marker expired.
//
//	KEYS[1] marker, KEYS[2..] counter buckets
//	ARGV: seq, marker ttl ms, then per counter bucket: delta, ttl ms
//
// Returns 1 if applied, 0 if the marker had it, the marker (a string) if
// it is ahead of seq.
var flushScript = redis.NewScript(`
local seq = tonumber(ARGV[1])
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then redis.call('DEL', KEYS[1]) end
local m = redis.call('GET', KEYS[1])
local last = 0
if m and #m <= 16 and string.match(m, '^%d+$') then last = tonumber(m) end
if last >= 9007199254740992 then last = 0 end -- 2^53: past it, numbers are not exact
if last == seq then return 0 end
if last > seq then return m end
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' then
    local v = t == 'string' and redis.call('GET', KEYS[i])
    local ok = v and (v == '0' or string.match(v, '^-?[1-9]%d*$'))
    if not ok or #string.gsub(v, '-', '') > 17 then redis.call('DEL', KEYS[i]) end
  end
end
local a = 3
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[a])
  redis.call('PEXPIRE', KEYS[i], ARGV[a + 1])
  a = a + 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

func (c *Counters) ttl(bucket int64) int64 {
	end := bucket + c.o.Bucket.Milliseconds()
	return max(end+c.o.Retention.Milliseconds()-c.o.Now().UnixMilli(), 1000)
}

// apply writes a batch: its counter deltas in one script guarded by the
// instance's marker, its unique members by PFADD in chunks (idempotent, so
// a retried batch adds nothing twice). It is retried as a whole.
func (c *Counters) apply(ctx context.Context, name string, b *batch) error {
	if len(b.deltas) > 0 {
		keys := []string{c.key(name, "f", c.o.Instance)}
		args := []any{b.seq, (c.o.Retention + c.o.Bucket).Milliseconds()}
		for bk, d := range b.deltas {
			keys = append(keys, c.key(name, "c", strconv.FormatInt(bk, 10)))
			args = append(args, d, c.ttl(bk))
		}
		var res *redis.Cmd
		for renumbered := false; ; renumbered = true {
			args[0] = b.seq
			err := c.write(ctx, name, keys[0], func(ctx context.Context, p redis.Pipeliner, noScript bool) {
				if noScript {
					res = flushScript.Eval(ctx, p, keys, args...)
				} else {
					res = flushScript.EvalSha(ctx, p, keys, args...)
				}
			}, func() error { return res.Err() })
			if err != nil {
				return err
			}
			marker, ahead := res.Val().(string)
			if !ahead {
				break
			}
			m, err := strconv.ParseUint(marker, 10, 64)
			if err != nil || renumbered || m+1 >= 1<<53 {
				// Renumbered once and still behind: another live process
				// writes under this Instance name. The batch stays.
				return fmt.Errorf("%w: the flush marker of instance %q is at %s, ahead of batch %d (two processes share the Instance name?)", ErrUnavailable, c.o.Instance, marker, b.seq)
			}
			c.mu.Lock()
			s := c.names[name]
			s.seq = max(s.seq, m) + 1
			b.seq = s.seq
			c.mu.Unlock()
			c.event(ctx, Event{Kind: EventRenumbered, Counter: name, Items: len(b.deltas)})
		}
		if applied, _ := res.Int64(); applied == 0 {
			c.event(ctx, Event{Kind: EventReplayed, Counter: name, Items: len(b.deltas)})
		}
	}
	for bk, ms := range b.uniq {
		k := c.key(name, "u", strconv.FormatInt(bk, 10))
		for i := 0; i < len(ms); i += uniqueChunk {
			chunk := ms[i:min(i+uniqueChunk, len(ms))]
			args := make([]any, len(chunk))
			for j, m := range chunk {
				args[j] = m
			}
			err := c.write(ctx, name, k, func(ctx context.Context, p redis.Pipeliner, _ bool) {
				p.PFAdd(ctx, k, args...)
				p.PExpire(ctx, k, time.Duration(c.ttl(bk))*time.Millisecond)
			}, nil)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// write runs cmds in one pipeline on the master of key's slot, under the
// breaker and Timeout, followed by WAIT when Options.WaitReplicas is set.
// check, if not nil, reads the outcome of cmds; a NOSCRIPT reply makes
// write run cmds again with noScript set (the script was not run). Every
// failure wraps ErrUnavailable.
func (c *Counters) write(ctx context.Context, name, key string, cmds func(ctx context.Context, p redis.Pipeliner, noScript bool), check func() error) error {
	start := time.Now()
	err := c.call(ctx, func(ctx context.Context) error {
		// WAIT counts the replicas that have this connection's writes: the
		// pipeline then goes to the master's own client.
		var target redis.Cmdable = c.rdb
		if c.o.WaitReplicas > 0 {
			var err error
			if target, err = c.topo.Master(ctx, c.rdb, key); err != nil {
				return err
			}
		}
		var err error
		for _, noScript := range []bool{false, true} {
			var acks *redis.Cmd
			_, err = target.Pipelined(ctx, func(p redis.Pipeliner) error {
				cmds(ctx, p, noScript)
				if c.o.WaitReplicas > 0 {
					acks = p.Do(ctx, "WAIT", c.o.WaitReplicas, max(c.o.Timeout.Milliseconds()*3/4, 1))
				}
				return nil
			})
			if check != nil && redis.HasErrorPrefix(check(), "NOSCRIPT") && !noScript {
				continue
			}
			if err != nil {
				return err
			}
			if acks != nil {
				if n, _ := acks.Int64(); n < int64(c.o.WaitReplicas) {
					return fmt.Errorf("%w: %d of %d replicas", ErrNotReplicated, n, c.o.WaitReplicas)
				}
			}
			return nil
		}
		return err
	})
	if err != nil {
		c.event(ctx, Event{Kind: EventUnavailable, Counter: name, Duration: time.Since(start), Err: err})
		return err
	}
	return nil
}

// call runs f under the breaker and Timeout; every failure wraps
// ErrUnavailable. A connection error makes a Cluster client re-read its
// slot map.
//
// A caller whose context has ended gets ErrUnavailable without a call,
// and a call its caller's context ended early (breaker.CallerLeft) says
// nothing to the breaker: callers that give up must not open the breaker
// every caller shares.
func (c *Counters) call(ctx context.Context, f func(ctx context.Context) error) error {
	b := c.o.Breaker
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
	}
	if b != nil && !b.Allow() {
		return fmt.Errorf("%w: breaker open", ErrUnavailable)
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	err := f(cctx)
	cancel()
	if err != nil && !errors.Is(err, redis.Nil) {
		c.topo.Failed(err)
		switch {
		case errors.Is(err, ErrNotReplicated):
		case breaker.CallerLeft(ctx, time.Since(start), c.o.Timeout):
			breaker.Forget(b)
		case b != nil:
			b.Failure()
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if b != nil {
		b.Success()
	}
	return nil
}

// Run flushes every interval until ctx ends, then flushes once more
// (bounded by Options.Timeout) and returns nil.
func (c *Counters) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.Timeout)
			_ = c.Flush(fctx)
			cancel()
			return nil
		case <-t.C:
			_ = c.Flush(ctx)
		}
	}
}

// buckets returns the keys of name's buckets of kind from..to.
func (c *Counters) buckets(name, kind string, from, to time.Time) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	w := c.o.Bucket.Milliseconds()
	a, b := c.bucketOf(from), c.bucketOf(to)
	if b < a {
		return nil, nil
	}
	if (b-a)/w+1 > MaxQueryBuckets {
		return nil, fmt.Errorf("%w: %d buckets in one query, limit %d", ErrInvalidOptions, (b-a)/w+1, MaxQueryBuckets)
	}
	var keys []string
	for x := a; x <= b; x += w {
		keys = append(keys, c.key(name, kind, strconv.FormatInt(x, 10)))
	}
	return keys, nil
}

// Sum returns counter name's total over the buckets from from's to to's,
// as Redis has it (increments not yet flushed are not in it).
func (c *Counters) Sum(ctx context.Context, name string, from, to time.Time) (int64, error) {
	keys, err := c.buckets(name, "c", from, to)
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	var vs []any
	err = c.call(ctx, func(ctx context.Context) error {
		var err error
		vs, err = c.rdb.MGet(ctx, keys...).Result()
		return err
	})
	if err != nil {
		c.event(ctx, Event{Kind: EventUnavailable, Counter: name, Err: err})
		return 0, err
	}
	var sum int64
	for _, v := range vs {
		if s, ok := v.(string); ok {
			n, _ := strconv.ParseInt(s, 10, 64)
			sum += n
		}
	}
	return sum, nil
}

// Unique returns the estimated number of distinct members of unique
// count name over the buckets from from's to to's (PFCOUNT of their
// union). Redis's HyperLogLog has a standard error of 0.81%.
func (c *Counters) Unique(ctx context.Context, name string, from, to time.Time) (int64, error) {
	keys, err := c.buckets(name, "u", from, to)
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	var n int64
	err = c.call(ctx, func(ctx context.Context) error {
		var err error
		n, err = c.rdb.PFCount(ctx, keys...).Result()
		return err
	})
	if err != nil {
		c.event(ctx, Event{Kind: EventUnavailable, Counter: name, Err: err})
		return 0, err
	}
	return n, nil
}
