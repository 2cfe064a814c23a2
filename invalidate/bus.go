package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tier"
)

var (
	// ErrNotRunning is returned by Publish while [Bus.Run] is not running;
	// the cache keeps the invalidation and replays it.
	ErrNotRunning = errors.New("invalidate: bus not running")
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
}

// Stats counts what a [Bus] did since it was created.
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
}

// Bus is the pub/sub invalidation bus of one instance. It is safe for
// concurrent use. Create it with [New], run it with [Bus.Run], and give it
// to caches as tier.Options.Invalidator.
type Bus struct {
	c redis.UniversalClient
	o Options

	mu      sync.Mutex
	regs    map[string]*reg // by channel; guarded by mu
	ps      *redis.PubSub   // the live subscription; guarded by mu
	unread  []psCmd         // commands written on ps whose replies are not read yet, oldest first; guarded by mu
	running bool            // guarded by mu

	reqs      chan *pubReq
	lastHeard atomic.Int64 // unix nanos of the last thing heard on the subscription

	sent, sendErrors, received, keysDropped, gaps, reconnects, bad, subscribeErrors atomic.Uint64
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
	if opts.Heartbeat < 0 || opts.DeadAfter < 0 || opts.StaleBound < 0 || opts.MaxBatch < 0 {
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
	return &Bus{c: client, o: opts, regs: map[string]*reg{}, reqs: make(chan *pubReq, 1024)}, nil
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
		SubscribeErrors: b.subscribeErrors.Load(),
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

// Register implements tier.Invalidator.
func (b *Bus) Register(namespace string, sink tier.Sink) (tier.Publisher, error) {
	ch := Channel(namespace)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.regs[ch]; ok {
		return nil, fmt.Errorf("%w: %q", ErrDuplicate, namespace)
	}
	r := &reg{bus: b, channel: ch, sink: sink, seen: map[string]*origin{}}
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
	bus     *Bus
	channel string
	sink    tier.Sink

	confirmed atomic.Bool // the subscription to channel is confirmed
	silenced  atomic.Bool // the last tick found the subscription silent; tick goroutine only
	seq       uint64      // last data sequence number sent; sender goroutine only

	// Guarded by Bus.mu: the last refusal of channel's SUBSCRIBE since it
	// was last confirmed (nil if none), when to try again (unix nanos; 0:
	// no retry due) and the backoff after the next refusal.
	refusal error
	retryAt int64
	backoff time.Duration

	seen map[string]*origin // by origin id; receiver goroutine only
}

// origin is what the receiver knows of another instance on one channel.
type origin struct {
	seq   uint64
	heard int64
}

var _ tier.Publisher = (*reg)(nil)

// pubReq is one Publish (or, with done == nil, one heartbeat) for the
// sender goroutine.
type pubReq struct {
	r          *reg
	keys, tags []string
	heartbeat  bool
	done       chan error
}

// Publish implements tier.Publisher. It returns once the message carrying
// the keys and tags was published (or failed).
func (r *reg) Publish(ctx context.Context, keys, tags []string) error {
	b := r.bus
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	req := &pubReq{r: r, keys: keys, tags: tags, done: make(chan error, 1)}
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return fmt.Errorf("invalidate: publish: %w", context.Cause(ctx))
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("invalidate: publish: %w", context.Cause(ctx))
	}
}

// Unregister implements tier.Publisher.
func (r *reg) Unregister() {
	b := r.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.regs[r.channel] == r {
		delete(b.regs, r.channel)
		if b.ps != nil {
			_ = b.writeLocked(context.Background(), nil, r.channel)
		}
	}
}

// psCmd is a SUBSCRIBE (r != nil) or UNSUBSCRIBE of one channel, written on
// the subscription's connection.
type psCmd struct {
	r       *reg
	channel string
}

// writeLocked sends SUBSCRIBE of r's channel (r != nil) or UNSUBSCRIBE of
// channel on b.ps, and queues it in b.unread. Each command names one
// channel: Redis answers the commands of a connection in order, each with
// its confirmation or an error, so a refusal is matched to its channel and
// refuses no other (one SUBSCRIBE of several channels is refused as a
// whole when the user may not use one of them).
//
// A failed write closes b.ps, so the receiver replaces it: go-redis would
// otherwise reconnect on its own and resubscribe every channel with one
// command. b.mu must be held and b.ps not nil.
func (b *Bus) writeLocked(ctx context.Context, r *reg, channel string) error {
	b.unread = append(b.unread, psCmd{r: r, channel: channel})
	var err error
	if r != nil {
		err = b.ps.Subscribe(ctx, channel)
	} else {
		err = b.ps.Unsubscribe(ctx, channel)
	}
	if err != nil {
		_ = b.ps.Close()
	}
	return err
}

// Run subscribes and keeps the bus working until ctx ends: it receives
// other instances' invalidations, publishes this instance's and the
// heartbeats, and replaces a subscription that fails or goes silent. It
// returns nil when ctx ends, after its goroutines have exited.
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return ErrRunning
	}
	b.running = true
	b.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.send(ctx) }()
	go func() { defer wg.Done(); b.tick(ctx) }()
	defer func() {
		wg.Wait()
		b.mu.Lock()
		b.running = false
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

// receive runs one subscription until it fails or goes silent; it reports
// whether any of its channels was confirmed. Each channel is confirmed or
// refused on its own; a refused one is retried on the same connection (see
// [Bus.refused]).
func (b *Bus) receive(ctx context.Context) (confirmed bool) {
	b.mu.Lock()
	ps := b.c.Subscribe(ctx) // no channel yet: it connects on first use
	b.ps, b.unread = ps, nil
	for _, r := range b.regs {
		r.retryAt = 0
		if b.writeLocked(ctx, r, r.channel) != nil {
			break // ps is closed: the receive below fails
		}
	}
	b.mu.Unlock()
	b.lastHeard.Store(time.Now().UnixNano()) // a grace period for the new connection
	defer func() {
		b.mu.Lock()
		b.ps, b.unread = nil, nil
		for _, r := range b.regs {
			r.confirmed.Store(false)
			r.sink.LimitAge(b.o.StaleBound, "bus_down")
		}
		b.mu.Unlock()
		_ = ps.Close()
	}()
	for {
		timeout := b.o.Heartbeat
		if next := b.retry(ctx); next != 0 {
			timeout = min(timeout, max(time.Duration(next-time.Now().UnixNano()), time.Millisecond))
		}
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		now := time.Now().UnixNano()
		if err != nil {
			if ctx.Err() != nil {
				return confirmed
			}
			var reply redis.Error
			if errors.As(err, &reply) {
				// Redis refused a command; the connection works.
				b.lastHeard.Store(now)
				if !b.refused(err, now) {
					return confirmed
				}
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && now-b.lastHeard.Load() <= int64(b.o.DeadAfter) {
				continue
			}
			return confirmed // an error, or silence: a new connection
		}
		b.lastHeard.Store(now)
		switch m := msg.(type) {
		case *redis.Subscription:
			r, ok := b.answered(m.Kind, m.Channel)
			if !ok {
				return confirmed
			}
			if r != nil {
				confirmed = true
				r.confirmed.Store(true)
				clear(r.seen)
				// Anything may have been missed before this point.
				r.sink.Untrust(now, "subscribed")
				r.sink.LimitAge(0, "")
			}
		case *redis.Message:
			if r := b.lookup(m.Channel); r != nil {
				b.handle(r, m.Payload, now)
			}
		}
	}
}

// answered takes the oldest unread command, which a confirmation of kind
// ("subscribe" or "unsubscribe") for channel answers. It returns the
// registration a SUBSCRIBE confirmed, nil if it is gone or the command was
// an UNSUBSCRIBE, and false if the reply does not answer that command (the
// replies are out of step with what the bus sent, so the connection must be
// replaced).
func (b *Bus) answered(kind, channel string) (*reg, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.unread) == 0 {
		return nil, false
	}
	c := b.unread[0]
	b.unread = b.unread[1:]
	want := "unsubscribe"
	if c.r != nil {
		want = "subscribe"
	}
	if c.channel != channel || kind != want {
		return nil, false
	}
	if c.r == nil || b.regs[channel] != c.r {
		return nil, true
	}
	c.r.refusal, c.r.retryAt, c.r.backoff = nil, 0, 0
	return c.r, true
}

// refused takes the oldest unread command, which Redis refused with err.
// A refused SUBSCRIBE leaves its channel unconfirmed (its cache keeps
// serving L1 only within StaleBound) and is retried after a backoff; the
// first refusal since the channel was last confirmed is reported to the
// cache's observer as an L1 drop with reason "subscribe_refused". A refused
// UNSUBSCRIBE is ignored: the channel has no registration any more. It
// returns false if no command was waiting for a reply.
func (b *Bus) refused(err error, now int64) bool {
	b.mu.Lock()
	if len(b.unread) == 0 {
		b.mu.Unlock()
		return false
	}
	c := b.unread[0]
	b.unread = b.unread[1:]
	r := c.r
	if r == nil || b.regs[c.channel] != r {
		b.mu.Unlock()
		return true
	}
	b.subscribeErrors.Add(1)
	first := r.refusal == nil
	r.refusal = fmt.Errorf("%w: %s: %w", ErrSubscribeRefused, r.channel, err)
	d := max(r.backoff, minBackoff)
	r.retryAt, r.backoff = now+int64(d), min(2*d, maxBackoff)
	b.mu.Unlock()
	if first {
		r.sink.Untrust(now, "subscribe_refused")
	}
	return true
}

// retry subscribes again the refused channels whose backoff has passed. It
// returns when the next retry is due (unix nanos), or 0 if none is waiting.
func (b *Bus) retry(ctx context.Context) (next int64) {
	now := time.Now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.regs {
		switch {
		case r.retryAt == 0:
		case r.retryAt <= now:
			r.retryAt = 0
			if b.writeLocked(ctx, r, r.channel) != nil {
				return 0 // ps is closed: the next receive fails
			}
		case next == 0 || r.retryAt < next:
			next = r.retryAt
		}
	}
	return next
}

func (b *Bus) lookup(ch string) *reg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.regs[ch]
}

// handle applies one message received on r's channel.
func (b *Bus) handle(r *reg, payload string, now int64) {
	m, err := decode([]byte(payload))
	if err != nil {
		b.bad.Add(1)
		return
	}
	if m.origin == b.o.InstanceID {
		return // our own message: it only proves the subscription works
	}
	o, known := r.seen[m.origin]
	if !known {
		// First contact: the subscription's confirmation dropped L1, so
		// what this origin sent before is covered.
		o = &origin{seq: m.seq}
		if m.kind == kindInvalidate {
			o.seq = m.seq - 1
		}
		r.seen[m.origin] = o
		b.prune(r, now)
	}
	o.heard = now
	switch m.kind {
	case kindInvalidate:
		if m.seq != o.seq+1 {
			b.gaps.Add(1)
			r.sink.Untrust(now, "sequence_gap")
		}
		o.seq = m.seq
		b.received.Add(1)
		if len(m.keys) > 0 {
			r.sink.DropKeys(m.keys)
			b.keysDropped.Add(uint64(len(m.keys)))
		}
		if len(m.tags) > 0 {
			r.sink.DropTags(m.tags, m.at)
		}
	case kindHeartbeat:
		if m.seq != o.seq {
			// Data messages we never got (m.seq > o.seq), or an origin that
			// restarted its numbering: either way we cannot vouch for L1.
			b.gaps.Add(1)
			r.sink.Untrust(now, "sequence_gap")
			o.seq = m.seq
		}
	}
}

// prune forgets origins not heard from for a long time (instances that
// went away), so r.seen does not grow without bound.
func (b *Bus) prune(r *reg, now int64) {
	if len(r.seen) < 64 {
		return
	}
	for id, o := range r.seen {
		if now-o.heard > 10*int64(b.o.DeadAfter) {
			delete(r.seen, id)
		}
	}
}

// tick publishes heartbeats and, while a channel is not known to work,
// keeps its cache from serving entries older than StaleBound.
func (b *Bus) tick(ctx context.Context) {
	interval := min(b.o.Heartbeat, max(b.o.StaleBound/4, time.Millisecond))
	t := time.NewTicker(interval)
	defer t.Stop()
	lastBeat := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		silent := now.UnixNano()-b.lastHeard.Load() > int64(b.o.DeadAfter)
		b.mu.Lock()
		regs := make([]*reg, 0, len(b.regs))
		for _, r := range b.regs {
			regs = append(regs, r)
		}
		b.mu.Unlock()
		// Nothing here may block. (Replacing a silent subscription is the
		// receiver's job: closing it here could wait on go-redis's locks
		// for as long as it is stuck.) The age limit is checked by the
		// cache at each read, so it holds however late this loop runs.
		for _, r := range regs {
			switch {
			case silent || !r.confirmed.Load():
				r.sink.LimitAge(b.o.StaleBound, "bus_down")
			case r.silenced.Load():
				// Heard again on a confirmed subscription after a silence:
				// what was sent meanwhile may be lost.
				r.sink.Untrust(now.UnixNano(), "bus_silence_over")
				r.sink.LimitAge(0, "")
			}
			r.silenced.Store(silent)
		}
		if now.Sub(lastBeat) >= b.o.Heartbeat {
			lastBeat = now
			for _, r := range regs {
				select {
				case b.reqs <- &pubReq{r: r, heartbeat: true}:
				default: // the sender is backed up; it is busy publishing anyway
				}
			}
		}
	}
}

// send is the only goroutine that publishes, so an instance's messages
// (data and heartbeats) reach Redis in sequence order. It batches every
// request that is waiting when it starts a PUBLISH.
func (b *Bus) send(ctx context.Context) {
	for {
		var first *pubReq
		select {
		case <-ctx.Done():
			b.failPending()
			return
		case first = <-b.reqs:
		}
		batch := []*pubReq{first}
		size := len(first.keys) + len(first.tags)
	drain:
		for size < b.o.MaxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
				size += len(r.keys) + len(r.tags)
			default:
				break drain
			}
		}
		b.flush(ctx, batch)
	}
}

// flush publishes one message per channel for the batch, pipelined.
func (b *Bus) flush(ctx context.Context, batch []*pubReq) {
	type out struct {
		m    message
		reqs []*pubReq
	}
	var order []*reg
	data := map[*reg]*out{}
	beats := map[*reg]bool{}
	for _, q := range batch {
		if q.heartbeat {
			beats[q.r] = true
			continue
		}
		o, ok := data[q.r]
		if !ok {
			o = &out{m: message{kind: kindInvalidate, origin: b.o.InstanceID}}
			data[q.r] = o
			order = append(order, q.r)
		}
		o.m.keys = append(o.m.keys, q.keys...)
		o.m.tags = append(o.m.tags, q.tags...)
		o.reqs = append(o.reqs, q)
	}
	now := time.Now().UnixNano()
	// Callers wait with their own deadlines; this one only keeps a stuck
	// connection from holding the sender forever.
	pctx, cancel := context.WithTimeout(ctx, max(b.o.Heartbeat, time.Second))
	defer cancel()
	cmds := map[*reg]*redis.IntCmd{}
	_, err := b.c.Pipelined(pctx, func(p redis.Pipeliner) error {
		for _, r := range order {
			o := data[r]
			r.seq++
			o.m.seq, o.m.at = r.seq, now
			cmds[r] = p.Publish(pctx, r.channel, o.m.encode())
		}
		for r := range beats {
			m := message{kind: kindHeartbeat, origin: b.o.InstanceID, seq: r.seq, at: now}
			p.Publish(pctx, r.channel, m.encode())
		}
		return nil
	})
	for _, r := range order {
		// Err is the first failed command's error. A Redis error reply
		// belongs to its own command (a heartbeat refused on another
		// channel does not fail this one); any other error may have lost
		// them all.
		rerr := err
		var reply redis.Error
		if c := cmds[r]; c != nil && (c.Err() != nil || errors.As(err, &reply)) {
			rerr = c.Err()
		}
		if rerr != nil {
			b.sendErrors.Add(1)
			rerr = fmt.Errorf("invalidate: publish: %w", rerr)
		} else {
			b.sent.Add(1)
		}
		for _, q := range data[r].reqs {
			q.done <- rerr
		}
	}
}

// failPending answers the requests still queued when Run stops.
func (b *Bus) failPending() {
	for {
		select {
		case q := <-b.reqs:
			if q.done != nil {
				q.done <- ErrNotRunning
			}
		default:
			return
		}
	}
}
