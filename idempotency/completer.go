package idempotency

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff of the background completer.
const (
	completerMinWait = 50 * time.Millisecond
	completerMaxWait = 2 * time.Second
)

// pendingCompletion is a result that could not reach Redis.
type pendingCompletion struct {
	a        *Attempt
	enc      []byte    // the encoded result
	res      *Result   // for L1
	deadline time.Time // set by add
	queued   bool      // guarded by completer.mu: counted in completer.count
}

// completer retries completions in the background (brandur's "completer":
// a finished request whose result was not recorded would otherwise run
// again when retried after its lease ends). One goroutine per Store.
type completer struct {
	s    *Store
	wake chan struct{} // buffered 1: work was added
	quit chan struct{} // closed by close
	done chan struct{} // closed when the goroutine exits

	mu      sync.Mutex
	pending []*pendingCompletion // guarded by mu; not those being retried
	count   int                  // guarded by mu: queued, or being retried
	closed  bool                 // guarded by mu

	// busy holds the records one of whose completions is being tried now
	// (by the completer, or by a Begin that took it), each with a channel
	// closed when that try ends; guarded by mu. One try per record at a
	// time: take waits for it, retryAll skips the record's others.
	busy map[string]chan struct{}

	waiting atomic.Int64 // count, readable without mu
}

func newCompleter(s *Store) *completer {
	c := &completer{s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		busy: map[string]chan struct{}{}}
	go c.loop()
	return c
}

// add queues pc; it reports false (and reports the drop) when the queue is
// full or the completer closed.
func (c *completer) add(ctx context.Context, pc *pendingCompletion) bool {
	c.mu.Lock()
	if c.closed || len(c.pending) >= c.s.o.MaxPendingCompletions {
		c.mu.Unlock()
		c.s.event(ctx, Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence,
			Err: errors.New("idempotency: completion queue full or store closed")})
		return false
	}
	pc.deadline = time.Now().Add(c.s.o.CompleteDeadline)
	pc.queued = true
	c.pending = append(c.pending, pc)
	c.count++
	c.waiting.Store(int64(c.count))
	c.mu.Unlock()
	c.s.event(ctx, Event{Kind: EventCompleteDeferred, Record: pc.a.id.short, Fence: pc.a.Fence})
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// nudge wakes the completer if completions wait: a call that just reached
// Redis says it is back, and a retry may be about to take over a finished
// request whose completion is still queued.
func (c *completer) nudge() {
	if c.waiting.Load() == 0 {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take removes and returns the queued completion of the record key, if
// any, and marks the record busy until settle. If another try of the
// record's completion is running (the completer's, or another Begin's),
// take waits for it to end (or ctx) and looks again. Of two completions of
// one record, it takes the newest attempt's (the older one can only find
// its lease lost).
//
// waited reports that take waited for another try of the record's
// completion: that try may have recorded the request, so a Begin that then
// cannot reach Redis must not fail open.
func (c *completer) take(ctx context.Context, key string) (pc *pendingCompletion, waited bool) {
	for c.waiting.Load() != 0 {
		c.mu.Lock()
		busy, trying := c.busy[key]
		if !trying {
			pc := c.removeNewestLocked(key)
			if pc != nil {
				c.busy[key] = make(chan struct{})
			}
			c.mu.Unlock()
			return pc, waited
		}
		c.mu.Unlock()
		waited = true
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, waited
		}
	}
	return nil, waited
}

// holds reports whether a completion of the record key is queued or being
// tried: this instance finished the request and has not recorded it.
func (c *completer) holds(key string) bool {
	if c.waiting.Load() == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, trying := c.busy[key]; trying {
		return true
	}
	return slices.ContainsFunc(c.pending, func(pc *pendingCompletion) bool { return pc.a.id.key == key })
}

// removeNewestLocked removes from pending and returns the queued
// completion of key with the largest fence, or nil. c.mu must be held.
func (c *completer) removeNewestLocked(key string) *pendingCompletion {
	at := -1
	for i, pc := range c.pending {
		if pc.a.id.key == key && (at < 0 || pc.a.Fence > c.pending[at].a.Fence) {
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	pc := c.pending[at]
	c.pending = slices.Delete(c.pending, at, at+1)
	return pc
}

// unbusyLocked ends the try of key's completion. c.mu must be held.
func (c *completer) unbusyLocked(key string) {
	if b, ok := c.busy[key]; ok {
		delete(c.busy, key)
		close(b)
	}
}

// unqueueLocked removes pc from pending and reports whether it was there.
// c.mu must be held.
func (c *completer) unqueueLocked(pc *pendingCompletion) bool {
	i := slices.Index(c.pending, pc)
	if i < 0 {
		return false
	}
	c.pending = slices.Delete(c.pending, i, i+1)
	return true
}

// settle ends a try of pc, a completion taken with take, and reports
// whether it reached a final outcome: completeOnce released it (recorded,
// lease lost, or corrupt: Redis answered). Otherwise (Redis unreachable,
// or the context of the request that tried it ended, whatever its cause)
// pc goes back to the queue and wakes the completer, whose timer may have
// stopped on an empty queue meanwhile; once the completer is closed, it is
// reported dropped instead.
func (c *completer) settle(ctx context.Context, pc *pendingCompletion) (final bool) {
	c.mu.Lock()
	c.unbusyLocked(pc.a.id.key)
	switch {
	case !pc.queued:
		c.mu.Unlock()
		return true
	case c.closed:
		c.releaseLocked(pc)
		c.mu.Unlock()
		c.s.event(ctx, Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence, Err: ErrClosed})
		return false
	}
	c.pending = append(c.pending, pc)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return false
}

// release stops counting pc as pending: its completion reached a final
// outcome (recorded, lease lost, corrupt) or was dropped. completeOnce
// calls it before it reports the outcome, so an observer that sees
// EventCompleted also sees Pending without it. It does nothing for a
// completion that was never queued, or twice.
func (c *completer) release(pc *pendingCompletion) {
	c.mu.Lock()
	c.releaseLocked(pc)
	c.mu.Unlock()
}

func (c *completer) releaseLocked(pc *pendingCompletion) {
	if !pc.queued {
		return
	}
	pc.queued = false
	if c.closed { // close has zeroed the count
		return
	}
	c.count--
	c.waiting.Store(int64(c.count))
}

// Pending returns how many completions wait for Redis.
func (s *Store) Pending() int {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.count
}

func (c *completer) loop() {
	defer close(c.done)
	wait := completerMinWait
	var timer *time.Timer
	var tick <-chan time.Time
	for {
		select {
		case <-c.quit:
			if timer != nil {
				timer.Stop()
			}
			return
		case <-c.wake:
		case <-tick:
		}
		if c.retryAll() {
			wait = min(wait*2, completerMaxWait)
		} else {
			wait = completerMinWait
		}
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n == 0 {
			tick = nil
			continue
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		tick = timer.C
	}
}

// retryAll tries every pending completion once; it reports whether Redis
// was still unavailable for any of them. A completion stays in the queue
// until its own try begins (it is then busy): a Begin of its record finds
// it in one or the other, never in neither.
func (c *completer) retryAll() (unavailable bool) {
	c.mu.Lock()
	round := slices.Clone(c.pending)
	c.mu.Unlock()
	ctx := context.Background()
	for _, pc := range round {
		select {
		case <-c.quit:
			return unavailable
		default:
		}
		var err error
		c.mu.Lock()
		if _, trying := c.busy[pc.a.id.key]; trying || !c.unqueueLocked(pc) {
			// A Begin took it meanwhile, or is trying another completion
			// of its record: it is the Begin's, or the next round's.
			c.mu.Unlock()
			continue
		}
		if unavailable {
			// Redis is still away: try it next round, unless its time is over.
			err = ErrUnavailable
		} else {
			c.busy[pc.a.id.key] = make(chan struct{})
			c.mu.Unlock()
			err = c.s.completeOnce(ctx, pc)
			c.mu.Lock()
			c.unbusyLocked(pc.a.id.key)
		}
		dropped := false
		switch {
		case !pc.queued:
			// A final outcome: completeOnce released and reported it.
		case time.Now().After(pc.deadline):
			c.releaseLocked(pc)
			dropped = true
		default:
			unavailable = true
			c.pending = append(c.pending, pc)
		}
		c.mu.Unlock()
		if dropped {
			c.s.event(ctx, Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence,
				Err: fmt.Errorf("idempotency: completion deadline passed: %w", err)})
		}
	}
	return unavailable
}

// close stops the goroutine, waits for it and reports what was pending as
// dropped.
func (c *completer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	<-c.done
	c.mu.Lock()
	left := c.pending
	c.pending = nil
	for _, pc := range left {
		pc.queued = false
	}
	c.count = 0
	c.waiting.Store(0)
	c.mu.Unlock()
	for _, pc := range left {
		c.s.event(context.Background(), Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence, Err: ErrClosed})
	}
}
