// waitall.go holds the writes that wait until every live instance has dropped the key.

package tier

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotAcknowledged is matched by the error of [Cache.DeleteAndWait]
	// and [Cache.SetAndWait] when an instance the invalidator knows to be
	// live did not confirm in time that it applied the invalidation. The
	// write itself (L1, L2, the message) was done; only the wait failed.
	// The invalidator's error says which instances did not answer
	// (package invalidate: *invalidate.NotAcknowledgedError).
	ErrNotAcknowledged = errors.New("tier: invalidation not acknowledged by every live instance")
	// ErrAckUnsupported is returned by [Cache.DeleteAndWait] and
	// [Cache.SetAndWait] on a cache whose Invalidator cannot wait for
	// acknowledgements (its Publisher is not an [AckPublisher]), or that
	// has no Invalidator. Nothing was written.
	ErrAckUnsupported = errors.New("tier: the invalidator cannot wait for other instances")
)

// AckPublisher is a [Publisher] that can also wait until the other
// instances have applied what it published. An [Invalidator] whose
// Publisher implements it supports [Cache.DeleteAndWait] and
// [Cache.SetAndWait]; the others keep working without.
type AckPublisher interface {
	Publisher
	// WaitApplied returns nil once every instance the publisher knows to
	// be live (other than this one) has applied every invalidation this
	// Publisher published before the call returned to it: dropped the
	// keys from L1, or all of L1 (see [Settler]). It returns an error
	// matching [ErrNotAcknowledged] when one did not confirm before ctx
	// ends (or before the publisher's own bound), and another error when
	// the request could not be sent. It must not modify the cache.
	WaitApplied(ctx context.Context) error
}

// Settler is implemented by the [Sink] a [Cache] gives its Invalidator. An
// invalidator that acknowledges invalidations (an [AckPublisher]) calls
// Settle, outside the calls that must not block, before it confirms them.
type Settler interface {
	// Settle returns once every key dropped (by [Sink.DropKeys]) before
	// the call is gone from L1 for every reader: an L1 write of an older
	// value that was still queued when the key was dropped has been
	// applied and removed. It may block briefly.
	Settle()
}

var _ Settler = sink[int]{}

// Settle implements [Settler].
func (s sink[V]) Settle() {
	c := s.c
	c.l1mu.RLock()
	defer c.l1mu.RUnlock()
	if !c.l1closed {
		c.l1.Wait()
	}
}

// DeleteAndWait is [Cache.Delete], then a wait until every other live
// instance has dropped the keys from its L1: when it returns nil, no
// instance that the invalidator knew to be live serves a value of the keys
// read before the call (plain Delete promises that only once the message
// has reached each instance, a few hundred microseconds to milliseconds
// later; see the README). The invalidator decides who is live and how long
// to wait at most (package invalidate: the instances heard within
// Options.DeadAfter, waited for at most Options.AckTimeout).
//
// An instance that did not answer in time makes it return an error
// matching [ErrNotAcknowledged] (with the instances' ids, in package
// invalidate's error); the keys were deleted anyway, and that instance
// drops them when the message reaches it (or all of L1 when it finds the
// message lost). Delete's own errors are returned as they are, without
// waiting. It returns [ErrAckUnsupported], and does nothing, when the
// Invalidator cannot wait.
//
// NOTE: it costs about one more round trip through Redis than Delete, plus
// the slowest instance's time to answer, and sends one message per other
// instance; use it where a read on another instance must see the write
// (read-your-writes across instances), not on every write.
func (c *Cache[V]) DeleteAndWait(ctx context.Context, keys ...string) error {
	ap, err := c.ackPublisher("delete and wait")
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, keys...); err != nil {
		return err
	}
	return c.waitApplied(ctx, ap, "delete and wait")
}

// SetAndWait is [Cache.Set], then the same wait as [Cache.DeleteAndWait]:
// when it returns nil, every other live instance has dropped its copy of
// key, so its next read reads v from L2 (or a newer value). Errors are as
// for DeleteAndWait.
func (c *Cache[V]) SetAndWait(ctx context.Context, key string, v V, ttl time.Duration) error {
	ap, err := c.ackPublisher("set and wait")
	if err != nil {
		return err
	}
	if err := c.Set(ctx, key, v, ttl); err != nil {
		return err
	}
	return c.waitApplied(ctx, ap, "set and wait")
}

func (c *Cache[V]) ackPublisher(op string) (AckPublisher, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	ap, ok := c.pub.(AckPublisher)
	if !ok {
		return nil, fmt.Errorf("tier: %s: %w", op, ErrAckUnsupported)
	}
	return ap, nil
}

func (c *Cache[V]) waitApplied(ctx context.Context, ap AckPublisher, op string) error {
	if err := ap.WaitApplied(ctx); err != nil {
		return fmt.Errorf("tier: %s: %w", op, err)
	}
	return nil
}
