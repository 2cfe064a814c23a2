// ack.go holds acknowledged invalidations: who is live, the ack request, the acks, and the error of a wait that failed.

package invalidate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tiercache/tiercache/tier"
)

// NotAcknowledgedError is the error of the wait of an acknowledged
// invalidation (tier.Cache.DeleteAndWait and SetAndWait; see "Acknowledged
// invalidations" in the package documentation) when a live instance did
// not acknowledge in time. It matches tier.ErrNotAcknowledged, and the cause
// of the end of the wait (context.DeadlineExceeded for the bus's own
// Options.AckTimeout).
type NotAcknowledgedError struct {
	// Namespace is the cache namespace of the invalidation.
	Namespace string
	// Missing are the instance ids ([Options.InstanceID]) of the live
	// instances that did not acknowledge, sorted.
	Missing []string
	// Unheard reports that this instance did not hear its own request
	// come back (its subscription is down or lagging), so it could not
	// tell which instances were live when the request reached them;
	// Missing then names those heard within Options.DeadAfter that did
	// not acknowledge.
	Unheard bool
	// Err is why the wait ended: the caller's context's cause, or
	// context.DeadlineExceeded at Options.AckTimeout.
	Err error
}

// Error implements error.
func (e *NotAcknowledgedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalidate: %q: not acknowledged by %d live instance(s)", e.Namespace, len(e.Missing))
	if len(e.Missing) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Missing, ", "))
	}
	if e.Unheard {
		b.WriteString(" (this instance did not hear its own request back: its subscription is down)")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is tier.ErrNotAcknowledged.
func (e *NotAcknowledgedError) Is(target error) bool { return target == tier.ErrNotAcknowledged }

// Unwrap returns why the wait ended.
func (e *NotAcknowledgedError) Unwrap() error { return e.Err }

// acks are the waits of this bus's acknowledged invalidations in flight.
type acks struct {
	mu      sync.Mutex
	next    uint64             // the last request number given; guarded by mu
	waiting map[uint64]*waiter // by request number; guarded by mu
}

// waiter is one [reg.WaitApplied] in flight.
type waiter struct {
	id uint64 // the request number; immutable
	r  *reg   // immutable

	echo chan struct{} // closed when this bus heard its own request back

	// Guarded by Bus.acks.mu.
	echoed bool
	live   map[string]bool // who must answer; nil until the request echoed and the channel warmed up
	acked  map[string]bool // who answered, live or not
	done   chan struct{}   // closed once every live instance answered
	closed bool            // done is closed
}

// ackReq is an acknowledgement this bus owes another instance.
type ackReq struct {
	to  string // the requester
	req uint64 // its request number
}

// peers is what one channel's receiver knows of the other instances that
// publish on it: when each was last heard. Unlike reg.seen it survives a
// new subscription: an instance heard a moment ago is still live.
type peers struct {
	mu    sync.Mutex
	heard map[string]int64 // origin id → unix nanos; guarded by mu
	// confirmedAt is when the channel's current subscription was confirmed
	// (unix nanos; 0 while it is not); guarded by mu.
	confirmedAt int64
}

// saw records that origin was heard at now.
func (p *peers) saw(origin string, now int64, forget time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.heard == nil {
		p.heard = map[string]int64{}
	}
	if _, ok := p.heard[origin]; !ok && len(p.heard) >= 64 {
		for id, at := range p.heard {
			if now-at > int64(forget) {
				delete(p.heard, id)
			}
		}
	}
	p.heard[origin] = now
}

// gone forgets origin, which left.
func (p *peers) gone(origin string) {
	p.mu.Lock()
	delete(p.heard, origin)
	p.mu.Unlock()
}

// confirmed records the channel's subscription as confirmed at now (or, with
// 0, as lost).
func (p *peers) confirmed(now int64) {
	p.mu.Lock()
	p.confirmedAt = now
	p.mu.Unlock()
}

// live returns the instances heard within within of now, and when the
// current subscription was confirmed.
func (p *peers) live(now int64, within time.Duration) (ids map[string]bool, confirmedAt int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids = map[string]bool{}
	for id, at := range p.heard {
		if now-at <= int64(within) {
			ids[id] = true
		}
	}
	return ids, p.confirmedAt
}

// WaitApplied implements tier.AckPublisher. It publishes an ack request on
// the channel, after everything this bus published there before (one
// node, one order: an instance that answers it has applied them, or found
// one missing and dropped its L1), then waits until every other live
// instance has answered.
//
// Live means heard (any message: heartbeat, invalidation, ack) within
// Options.DeadAfter when this bus hears its own request back. A
// subscription confirmed less than a heartbeat period before cannot know
// every live instance yet: the bus then waits until it has listened for
// Options.Heartbeat (plus the heartbeat loop's tick) before it decides,
// which makes the first wait after a (re)subscription slower. The wait
// ends at ctx's end or after Options.AckTimeout, whichever is first, with
// a [*NotAcknowledgedError]. It returns [ErrNotRunning] while Run is not
// running.
func (r *reg) WaitApplied(ctx context.Context) error {
	b := r.bus
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if !running {
		return fmt.Errorf("invalidate: wait applied: %w", ErrNotRunning)
	}
	ctx, cancel := context.WithTimeout(ctx, b.o.AckTimeout)
	defer cancel()
	w := b.newWaiter(r)
	defer b.dropWaiter(w)

	req := &pubReq{r: r, waiter: w, done: make(chan error, 1)}
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return b.notAcked(ctx, w)
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("invalidate: ack request: %w", err)
		}
	case <-ctx.Done():
		return b.notAcked(ctx, w)
	}
	select {
	case <-w.echo:
	case <-ctx.Done():
		return b.notAcked(ctx, w)
	}
	// Decide who must answer: those heard within DeadAfter, once this
	// subscription has listened long enough to have heard every live one.
	now := time.Now().UnixNano()
	_, since := r.peers.live(now, b.o.DeadAfter)
	if warm := since + int64(b.warmUp()); since != 0 && now < warm {
		t := time.NewTimer(time.Duration(warm - now))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return b.notAcked(ctx, w)
		}
		now = time.Now().UnixNano()
	}
	live, _ := r.peers.live(now, b.o.DeadAfter)
	b.acks.mu.Lock()
	w.live = live
	b.checkLocked(w)
	b.acks.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return b.notAcked(ctx, w)
	}
}

// warmUp is how long a subscription listens before it knows every live
// instance: every instance publishes a heartbeat at least that often.
func (b *Bus) warmUp() time.Duration { return b.o.Heartbeat + b.tickInterval() }

func (b *Bus) newWaiter(r *reg) *waiter {
	b.acks.mu.Lock()
	defer b.acks.mu.Unlock()
	b.acks.next++
	w := &waiter{id: b.acks.next, r: r, echo: make(chan struct{}), acked: map[string]bool{}, done: make(chan struct{})}
	if b.acks.waiting == nil {
		b.acks.waiting = map[uint64]*waiter{}
	}
	b.acks.waiting[w.id] = w
	return w
}

func (b *Bus) dropWaiter(w *waiter) {
	b.acks.mu.Lock()
	delete(b.acks.waiting, w.id)
	b.acks.mu.Unlock()
}

// checkLocked closes w.done once every live instance answered. b.acks.mu
// must be held.
func (b *Bus) checkLocked(w *waiter) {
	if w.closed || w.live == nil {
		return
	}
	for id := range w.live {
		if !w.acked[id] {
			return
		}
	}
	w.closed = true
	close(w.done)
}

// notAcked returns the error of w's wait, which ctx ended.
func (b *Bus) notAcked(ctx context.Context, w *waiter) error {
	// Outside b.acks.mu: peers has its own lock.
	heard, _ := w.r.peers.live(time.Now().UnixNano(), b.o.DeadAfter)
	e := &NotAcknowledgedError{Namespace: w.r.namespace, Err: context.Cause(ctx)}
	b.acks.mu.Lock()
	live := w.live
	if live == nil {
		live = heard
	}
	for id := range live {
		if !w.acked[id] {
			e.Missing = append(e.Missing, id)
		}
	}
	e.Unheard = !w.echoed
	b.acks.mu.Unlock()
	slices.Sort(e.Missing)
	return e
}

// echoed records that this bus heard its own request req back on r's
// channel: every message Redis delivered before it has been heard.
// Receiver goroutine only.
func (b *Bus) echoed(req uint64) {
	b.acks.mu.Lock()
	defer b.acks.mu.Unlock()
	if w := b.acks.waiting[req]; w != nil && !w.echoed {
		w.echoed = true
		close(w.echo)
	}
}

// acked records that origin answered this bus's request req.
func (b *Bus) acked(req uint64, origin string) {
	b.acks.mu.Lock()
	defer b.acks.mu.Unlock()
	if w := b.acks.waiting[req]; w != nil {
		w.acked[origin] = true
		b.checkLocked(w)
	}
}

// left stops waiting for origin, whose bus stopped (see [Bus.leave]).
func (b *Bus) left(origin string) {
	b.acks.mu.Lock()
	defer b.acks.mu.Unlock()
	for _, w := range b.acks.waiting {
		if w.live[origin] {
			delete(w.live, origin)
			b.checkLocked(w)
		}
	}
}

// leaveTimeout bounds the PUBLISH of the leave messages when Run ends.
const leaveTimeout = 250 * time.Millisecond

// leave tells the other instances, when Run ends, that this one is gone:
// they stop waiting for its acknowledgements at once instead of after
// DeadAfter. Its caches, no longer hearing invalidations, serve no L1
// entry older than StaleBound from then on. Best effort, bounded by
// leaveTimeout: an instance that could not say it is leaving stops being
// waited for after DeadAfter. Sender goroutine only, after its last flush.
func (b *Bus) leave() {
	b.mu.Lock()
	msgs := make([]*outMsg, 0, len(b.regs))
	now := time.Now().UnixNano()
	for _, r := range b.regs {
		m := message{kind: kindLeave, origin: b.o.InstanceID, seq: r.seq, at: now}
		msgs = append(msgs, &outMsg{r: r, payload: m.encode()})
	}
	b.mu.Unlock()
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	b.publish(ctx, msgs)
}

// owe queues the acknowledgement of another instance's request, which r's
// channel delivered after everything that instance published there
// before. The sender settles the cache's L1 and publishes it. The receiver
// must not block: if the sender is backed up, the ack is dropped (and
// counted); the requester's wait then fails and names this instance.
func (b *Bus) owe(r *reg, m *message) {
	select {
	case b.reqs <- &pubReq{r: r, ack: &ackReq{to: m.origin, req: m.req}}:
	default:
		b.acksDropped.Add(1)
	}
}

// ackMsgs returns the messages of a flush's ack requests and acks, after
// settling the L1 of the caches that acknowledge. Sender goroutine only.
func (b *Bus) ackMsgs(reqs []*pubReq, now int64) []*outMsg {
	var msgs []*outMsg
	var settled []*reg
	for _, q := range reqs {
		m := message{origin: b.o.InstanceID, seq: q.r.seq, at: now}
		o := &outMsg{r: q.r}
		if q.waiter != nil {
			m.kind, m.req = kindAckRequest, q.waiter.id
			o.reqs, o.request = []*pubReq{q}, true
		} else {
			m.kind, m.to, m.req = kindAck, q.ack.to, q.ack.req
			o.ack = true
			if s, ok := q.r.sink.(tier.Settler); ok && !slices.Contains(settled, q.r) {
				s.Settle()
				settled = append(settled, q.r)
			}
		}
		o.payload = m.encode()
		msgs = append(msgs, o)
	}
	return msgs
}
