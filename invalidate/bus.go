// bus.go holds the Bus: its options, errors, counters, registration of namespaces and Run.

package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tier"
)

var (
	// ErrNotRunning is returned by Publish while [Bus.Run] is not running
	// (the cache keeps the invalidation and replays it), and matched by
	// the error of a [Bus.Ready] that ended before Run started.
	ErrNotRunning = errors.New("invalidate: bus not running (start it with go bus.Run(ctx))")
	// ErrRunning is returned by a second concurrent [Bus.Run].
	ErrRunning = errors.New("invalidate: bus already running")
	// ErrDuplicate is returned by Register for a namespace already registered.
	ErrDuplicate = errors.New("invalidate: namespace already registered")
	// ErrInvalidOptions is returned by [New] for options that cannot work.
	ErrInvalidOptions = errors.New("invalidate: invalid options")
	// ErrSubscribeRefused is matched by the error [Bus.SubscribeErr]
	// returns for a channel whose SUBSCRIBE Redis refused, for example with
	// NOPERM because the ACL user may not use the channel. The error also
	// wraps Redis's reply (see redis.IsPermissionError).
	ErrSubscribeRefused = errors.New("invalidate: subscribe refused")
)

// Defaults of [Options].
const (
	DefaultHeartbeat = time.Second
	DefaultMaxBatch  = 1000
)

// The backoff between two subscription attempts (of the connection, or of
// one refused channel) starts at minBackoff and doubles up to maxBackoff.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// Options configures a [Bus]. New copies it. A nil *Options means the
// defaults.
type Options struct {
	// InstanceID identifies this instance in its messages; it must differ
	// between instances. Default: 16 random bytes, hex.
	InstanceID string
	// Heartbeat is how often the bus publishes a heartbeat on each channel.
	// Default: 1 second.
	Heartbeat time.Duration
	// DeadAfter is how long a silent subscription (not even this instance's
	// own heartbeats come back) is trusted before the bus replaces it.
	// Default: 3 × Heartbeat.
	DeadAfter time.Duration
	// StaleBound is the oldest an L1 entry may be and still be served while
	// a channel is not known to work. Default: DeadAfter.
	StaleBound time.Duration
	// MaxBatch bounds the keys and tags one message carries. Default: 1000.
	MaxBatch int
	// AckTimeout bounds the wait of an acknowledged invalidation
	// (tier.Cache.DeleteAndWait, SetAndWait) when the caller's context
	// allows longer. Default: DeadAfter.
	AckTimeout time.Duration
}

// Stats counts what a [Bus] did since it was created. A count rises after
// what it counts is done: once Received, KeysDropped or Gaps has moved,
// the caches have applied the message or the gap (their L1 no longer holds
// the keys, their loads of them are fenced), so a caller that waits for a
// count may then read the caches.
type Stats struct {
	Sent        uint64 // invalidation messages published
	SendErrors  uint64 // PUBLISH failures (their callers got the error)
	Received    uint64 // invalidation messages received from other instances
	KeysDropped uint64 // keys dropped from L1 on other instances' word
	Gaps        uint64 // sequence gaps seen (each dropped L1)
	Reconnects  uint64 // subscriptions replaced
	BadMessages uint64 // payloads that did not decode
	// SubscribeErrors counts the SUBSCRIBE commands Redis refused (each
	// refused channel is retried with backoff; see [Bus.SubscribeErr]).
	SubscribeErrors uint64
	// Misplaced counts the subscriptions replaced because they were not on
	// the node this bus publishes to (after a Sentinel failover; see the
	// package documentation). They are also counted in Reconnects.
	Misplaced uint64
	// AcksSent counts the acknowledgements this bus published for other
	// instances' acknowledged invalidations; AcksDropped those it could
	// not (its sender was backed up, or the PUBLISH failed), which makes
	// the requester's wait fail and name this instance. An ack is counted
	// in AcksSent before its PUBLISH (so a requester whose wait it ended
	// finds it counted) and moved to AcksDropped if the PUBLISH fails.
	AcksSent, AcksDropped uint64
	// DeletesSent counts the L2 keys this bus deleted for its caches in
	// the pipeline of their invalidation's PUBLISH (see
	// [tier.DeletePublisher]).
	DeletesSent uint64
}

// Bus is the pub/sub invalidation bus of one instance. It is safe for
// concurrent use. Create it with [New], run it with [Bus.Run], and give it
// to caches as tier.Options.Invalidator.
type Bus struct {
	c    redis.UniversalClient
	o    Options
	topo *topology // immutable

	// mu is held while a SUBSCRIBE or UNSUBSCRIBE is written on ps (to
	// keep unread in the order of the writes), but not while a new ps
	// connects (see [Bus.subscribeAll]).
	mu      sync.Mutex
	regs    map[string]*reg // by channel; guarded by mu
	ps      *redis.PubSub   // the live subscription; guarded by mu
	psGen   uint64          // counts subscriptions; guarded by mu
	unread  []psCmd         // commands written on ps whose replies are not read yet, oldest first; guarded by mu
	running bool            // guarded by mu
	// changed is closed, and replaced, whenever running or a channel's
	// confirmation changes (what Ready waits for); guarded by mu.
	changed chan struct{}

	// probe is the channel only this bus subscribes to, on a Sentinel
	// failover client (see [Bus.checkProbe]); nil otherwise. Immutable.
	// Its confirmed flag is written under mu.
	probe    *reg
	probeOff atomic.Bool // the probe gave up
	// The last subscription the probe found misplaced, and how many in a
	// row were; sender goroutine only.
	lastMisplaced   uint64
	misplacedStreak int

	reqs chan *pubReq
	// sendMu is held by whoever publishes: the sender goroutine for each
	// flush, or a caller that found it idle (see [reg.enqueue]), so that
	// an instance's messages reach Redis in sequence order.
	sendMu sync.Mutex
	// sendOpen: the sender goroutine runs and has not begun to leave;
	// guarded by sendMu.
	sendOpen  bool
	lastHeard atomic.Int64 // unix nanos of the last thing heard on the subscription

	sent, sendErrors, received, keysDropped, gaps, reconnects, bad, subscribeErrors, misplaced atomic.Uint64
	acksSent, acksDropped, deletesSent                                                         atomic.Uint64

	acks acks // the acknowledged invalidations this bus waits for

	// dropOnSend, set by tests before Run, loses the data messages it
	// returns true for.
	dropOnSend func(channel string, seq uint64) bool
}

var _ tier.Invalidator = (*Bus)(nil)

// New returns a Bus over client (which stays the caller's to close).
func New(client redis.UniversalClient, o *Options) (*Bus, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOptions)
	}
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.Heartbeat < 0 || opts.DeadAfter < 0 || opts.StaleBound < 0 || opts.MaxBatch < 0 || opts.AckTimeout < 0 {
		return nil, fmt.Errorf("%w: negative value", ErrInvalidOptions)
	}
	if opts.InstanceID == "" {
		var id [16]byte
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+).
		opts.InstanceID = hex.EncodeToString(id[:])
	}
	if len(opts.InstanceID) > maxOriginLen {
		return nil, fmt.Errorf("%w: InstanceID longer than %d bytes", ErrInvalidOptions, maxOriginLen)
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.DeadAfter == 0 {
		opts.DeadAfter = 3 * opts.Heartbeat
	}
	if opts.StaleBound == 0 {
		opts.StaleBound = opts.DeadAfter
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.AckTimeout == 0 {
		opts.AckTimeout = opts.DeadAfter
	}
	b := &Bus{
		c: client, o: opts, topo: newTopology(client),
		regs: map[string]*reg{}, changed: make(chan struct{}), reqs: make(chan *pubReq, 1024),
	}
	if b.topo.probe {
		b.probe = &reg{bus: b, channel: probeChannel(opts.InstanceID)}
	}
	return b, nil
}

// Must is like [New] but panics on an error.
func Must(client redis.UniversalClient, o *Options) *Bus {
	b, err := New(client, o)
	if err != nil {
		panic(err)
	}
	return b
}

// Channel returns the pub/sub channel of a cache namespace.
func Channel(namespace string) string {
	return "tc:" + strconv.Itoa(len(namespace)) + ":" + namespace + "#inv"
}

// InstanceID returns the id this bus writes into its messages.
func (b *Bus) InstanceID() string { return b.o.InstanceID }

// Stats returns a snapshot of the bus's counters.
func (b *Bus) Stats() Stats {
	return Stats{
		Sent: b.sent.Load(), SendErrors: b.sendErrors.Load(), Received: b.received.Load(),
		KeysDropped: b.keysDropped.Load(), Gaps: b.gaps.Load(), Reconnects: b.reconnects.Load(), BadMessages: b.bad.Load(),
		SubscribeErrors: b.subscribeErrors.Load(), Misplaced: b.misplaced.Load(),
		AcksSent: b.acksSent.Load(), AcksDropped: b.acksDropped.Load(), DeletesSent: b.deletesSent.Load(),
	}
}

// SubscribeErr returns why namespace's channel is not subscribed, if Redis
// refused it: the last refusal since the channel was last confirmed, as an
// error matching [ErrSubscribeRefused] that wraps Redis's reply. It returns
// nil for a channel that is confirmed, not refused (not yet answered, or
// its connection is down) or not registered.
func (b *Bus) SubscribeErr(namespace string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.regs[Channel(namespace)]; r != nil {
		return r.refusal
	}
	return nil
}

// Ready waits until [Bus.Run] is running and the channel of every
// registered namespace is confirmed subscribed, so that the caches hear
// other instances' invalidations from then on. If ctx ends first, it
// returns an error matching ctx's cause and saying what was missing: one
// matching [ErrNotRunning] if Run had not started, or the refusal of a
// channel Redis refused (matching [ErrSubscribeRefused]).
//
// A bus with no namespace registered is ready once Run runs. Readiness
// can be lost again (a connection fails, a namespace registers); the
// caches are protected meanwhile by the age limit (Options.StaleBound).
func (b *Bus) Ready(ctx context.Context) error {
	for {
		b.mu.Lock()
		missing := b.missingLocked()
		changed := b.changed
		b.mu.Unlock()
		if missing == nil {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("invalidate: not ready: %w: %w", missing, context.Cause(ctx))
		}
	}
}

// missingLocked returns what keeps the bus from being ready, or nil. b.mu
// must be held.
func (b *Bus) missingLocked() error {
	if !b.running {
		return ErrNotRunning
	}
	var first *reg
	n := 0
	for ch, r := range b.regs {
		if !r.subscribed {
			n++
			if first == nil || ch < first.channel {
				first = r
			}
		}
	}
	switch {
	case first == nil:
		return nil
	case first.refusal != nil:
		return fmt.Errorf("%d channel(s) not subscribed, %w", n, first.refusal)
	default:
		return fmt.Errorf("%d channel(s) not subscribed yet, %s among them", n, first.channel)
	}
}

// changedLocked wakes the callers of Ready. b.mu must be held.
func (b *Bus) changedLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Register implements tier.Invalidator.
func (b *Bus) Register(namespace string, sink tier.Sink) (tier.Publisher, error) {
	ch := Channel(namespace)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.regs[ch]; ok {
		return nil, fmt.Errorf("%w: %q", ErrDuplicate, namespace)
	}
	r := &reg{bus: b, namespace: namespace, channel: ch, sink: sink, seen: map[string]*origin{}}
	b.regs[ch] = r
	// Until its subscription is confirmed, the cache cannot hear anything.
	sink.LimitAge(b.o.StaleBound, "bus_down")
	if b.ps != nil {
		// A failure leaves the channel unconfirmed: its cache serves only
		// young entries until the next subscription confirms it.
		_ = b.writeLocked(context.Background(), r, ch)
	}
	return r, nil
}

// reg is one registered cache namespace; it is the cache's tier.Publisher.
type reg struct {
	bus       *Bus
	namespace string
	channel   string
	sink      tier.Sink

	confirmed atomic.Bool // the subscription to channel is confirmed
	// subscribed: confirmed, and the cache told so (what Ready waits
	// for); guarded by Bus.mu.
	subscribed bool
	silenced   atomic.Bool // the last tick found the subscription silent; tick goroutine only
	// joining: confirmed, but this bus has not heard itself on the
	// channel since (see [Bus.join]); its cache serves no L1 entry.
	joining atomic.Bool
	seq     uint64 // last data sequence number sent; guarded by Bus.sendMu

	// Guarded by Bus.mu: the last refusal of channel's SUBSCRIBE since it
	// was last confirmed (nil if none), when to try again (unix nanos; 0:
	// no retry due) and the backoff after the next refusal.
	refusal error
	retryAt int64
	backoff time.Duration

	seen  map[string]*origin // by origin id; receiver goroutine only
	peers peers              // who is live, for acknowledged invalidations
}

var (
	_ tier.AckPublisher    = (*reg)(nil)
	_ tier.DeletePublisher = (*reg)(nil)
)

// Run subscribes and keeps the bus working until ctx ends: it receives
// other instances' invalidations, publishes this instance's and the
// heartbeats, and replaces a subscription that fails or goes silent. Until
// it runs, Publish fails with [ErrNotRunning]; [Bus.Ready] tells when its
// subscriptions are confirmed.
//
// Run returns nil when ctx ends, after its goroutines have exited and it
// has told the other instances it is leaving (one PUBLISH per channel,
// bounded by 250 ms; they stop waiting for its acknowledgements): within
// milliseconds, unless a PUBLISH is in flight on a connection that does
// not answer; that one ends at the client's read timeout.
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return ErrRunning
	}
	b.running = true
	b.changedLocked()
	b.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.send(ctx) }()
	go func() { defer wg.Done(); b.tick(ctx) }()
	defer func() {
		wg.Wait()
		b.mu.Lock()
		b.running = false
		b.changedLocked()
		b.mu.Unlock()
	}()

	backoff := minBackoff
	for ctx.Err() == nil {
		if b.receive(ctx) {
			backoff = minBackoff
		}
		if ctx.Err() != nil {
			break
		}
		b.reconnects.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}
