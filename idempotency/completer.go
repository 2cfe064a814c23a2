package idempotency

import (
	"context"
	"errors"
	"fmt"
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

	busy map[string]chan struct{} // guarded by mu: records being retried now, closed when done

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
// any. If the completer is retrying it right now, take waits for that try
// to end (or ctx) and looks again.
func (c *completer) take(ctx context.Context, key string) *pendingCompletion {
	for c.waiting.Load() != 0 {
		c.mu.Lock()
		busy, retrying := c.busy[key]
		if !retrying {
			pc := c.removeLocked(key)
			c.mu.Unlock()
			return pc
		}
		c.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// removeLocked removes the queued completion of key from pending and
// returns it, or nil. c.mu must be held.
func (c *completer) removeLocked(key string) *pendingCompletion {
	for i, pc := range c.pending {
		if pc.a.id.key == key {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return pc
		}
	}
	return nil
}

// settle reports what became of a completion taken with take: done, or
// back in the queue.
func (c *completer) settle(pc *pendingCompletion, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if done || c.closed {
		c.releaseLocked(pc)
		return
	}
	c.pending = append(c.pending, pc)
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
// was still unavailable for any of them.
func (c *completer) retryAll() (unavailable bool) {
	c.mu.Lock()
	batch := c.pending
	c.pending = nil
	c.mu.Unlock()
	var keep []*pendingCompletion
	ctx := context.Background()
	for _, pc := range batch {
		if unavailable { // Redis is still away: try the rest next round
			if time.Now().After(pc.deadline) {
				c.release(pc)
				c.s.event(ctx, Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence,
					Err: fmt.Errorf("idempotency: completion deadline passed: %w", ErrUnavailable)})
				continue
			}
			keep = append(keep, pc)
			continue
		}
		select {
		case <-c.quit:
			keep = append(keep, pc)
			continue
		default:
		}
		c.mu.Lock()
		busy := make(chan struct{})
		c.busy[pc.a.id.key] = busy
		c.mu.Unlock()
		err := c.s.completeOnce(ctx, pc)
		c.mu.Lock()
		delete(c.busy, pc.a.id.key)
		c.mu.Unlock()
		close(busy)
		switch {
		case err == nil, errors.Is(err, ErrLeaseLost), errors.Is(err, ErrCorrupt):
			// Done, or nothing more to do (released and reported by completeOnce).
			c.release(pc)
		case time.Now().After(pc.deadline):
			c.release(pc)
			c.s.event(ctx, Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence,
				Err: fmt.Errorf("idempotency: completion deadline passed: %w", err)})
		default:
			unavailable = true
			keep = append(keep, pc)
		}
	}
	c.mu.Lock()
	c.pending = append(keep, c.pending...)
	c.mu.Unlock()
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
