package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
}

func newCompleter(s *Store) *completer {
	c := &completer{s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
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
	c.pending = append(c.pending, pc)
	c.count++
	c.mu.Unlock()
	c.s.event(ctx, Event{Kind: EventCompleteDeferred, Record: pc.a.id.short, Fence: pc.a.Fence})
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
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
		err := c.s.completeOnce(ctx, pc)
		switch {
		case err == nil, errors.Is(err, ErrLeaseLost), errors.Is(err, ErrCorrupt):
			// Done, or nothing more to do (both reported by completeOnce).
		case time.Now().After(pc.deadline):
			c.s.event(ctx, Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence,
				Err: fmt.Errorf("idempotency: completion deadline passed: %w", err)})
		default:
			unavailable = true
			keep = append(keep, pc)
		}
	}
	c.mu.Lock()
	c.pending = append(keep, c.pending...)
	c.count -= len(batch) - len(keep)
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
	c.count = 0
	c.mu.Unlock()
	for _, pc := range left {
		c.s.event(context.Background(), Event{Kind: EventCompleteDropped, Record: pc.a.id.short, Fence: pc.a.Fence, Err: ErrClosed})
	}
}
