package tier

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// epochState is a namespace epoch and the L2 key prefix that names it. It
// is immutable: the cache swaps whole values, so a reader never sees a
// prefix of another epoch than the number beside it.
type epochState struct {
	n   int64
	pfx string // base + n + ":"
}

// setEpoch moves to epoch n (never back) and reports whether it moved.
func (c *Cache[V]) setEpoch(n int64) bool {
	next := &epochState{n: n, pfx: c.base + strconv.FormatInt(n, 10) + ":"}
	for {
		cur := c.epoch.Load()
		if cur != nil && n <= cur.n {
			return false
		}
		if c.epoch.CompareAndSwap(cur, next) {
			return cur != nil
		}
	}
}

// errEpoch is why L2 keys cannot be named now: an owed epoch move, or
// errEpochUnknown with the reason the epoch could not be read.
func (c *Cache[V]) errEpoch() error {
	if c.out.owing.Load() {
		return errEpochOwed
	}
	if p := c.epochErr.Load(); p != nil {
		return fmt.Errorf("%w: %w", errEpochUnknown, *p)
	}
	return errEpochUnknown
}

// readEpoch reads the namespace's epoch from L2. Moving to a newer one
// drops L1: the namespace was cleared.
func (c *Cache[V]) readEpoch(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	defer cancel()
	n, err := c.epocher.Epoch(ctx, c.epochK)
	if err != nil {
		c.epochErr.Store(&err)
		return
	}
	c.epochStale.Store(false)
	if c.setEpoch(n) && c.epochKnown.Load() {
		c.untrust(c.now()+1, ReasonNamespaceCleared)
	}
	c.epochKnown.Store(true)
}

// epochRefresh is how often the namespace's epoch is re-read from L2, in
// case a clear was missed.
const epochRefresh = 5 * time.Second

// epochUsable reports whether L2 keys may be named now: the epoch has been
// read, and no epoch move is owed (the keys of the current epoch may hold
// what an invalidation that could not be kept, or a failover, left behind).
func (c *Cache[V]) epochUsable() bool {
	return c.epochKnown.Load() && !c.out.owing.Load()
}

// oweEpochMove records that the namespace must move to its next epoch, for
// reason. Until the replayer has made the move, this instance does not use
// L2 (see epochUsable).
func (c *Cache[V]) oweEpochMove(reason Reason) {
	if _, first := c.out.owe(reason); first {
		c.obs.Event(context.Background(), Event{Cache: c.o.Name, Kind: EventEpochOwed, Tier: TierL2, Reason: reason})
	}
}

// moveEpoch makes the epoch move the namespace owes, if L2 answers: every
// key of the current epoch becomes unreachable, so what was queued for
// replay is covered and leaves the outbox, this instance's L1 is dropped,
// and the other instances are told (a "namespace cleared" message). It
// runs on the replayer's goroutine.
func (c *Cache[V]) moveEpoch(ctx context.Context) {
	reason, seq := c.out.owedMove()
	if reason == "" {
		return
	}
	known := c.epoch.Load().n
	var n int64
	err := c.l2OpOn(ctx, c.breakerOfFull(c.epochK), OpL2Epoch, "", func(ctx context.Context) (err error) {
		if reason == ReasonL2Failover && c.raiser != nil {
			// Every instance that saw the failover moves; the first one
			// moves for all (the others find the counter past known).
			n, err = c.raiser.RaiseEpoch(ctx, c.epochK, known)
			return err
		}
		n, err = c.epocher.NextEpoch(ctx, c.epochK)
		if err == nil && n <= known && c.raiser != nil {
			// The counter went back (a failover undid increments): move past
			// every epoch this instance has used.
			n, err = c.raiser.RaiseEpoch(ctx, c.epochK, known)
		}
		return err
	})
	if err != nil {
		c.epochErr.Store(&err)
		return
	}
	c.setEpoch(n)
	c.raiseTrustFloor(c.now() + 1)
	if !c.out.moved(seq) {
		return // owed again meanwhile: the next tick moves again
	}
	c.epochKnown.Store(true)
	c.epochStale.Store(false)
	c.ctr.epochMoves.Add(1)
	c.obs.Event(ctx, Event{Cache: c.o.Name, Kind: EventEpochMoved, Tier: TierL2, Reason: reason})
	if c.pub != nil {
		c.out.pubClear.Store(true) // sent by the replayer right after
	}
}

// checkLineage asks the Lineager L2 whether it may have lost acknowledged
// writes since the last check. If so, L1 is dropped at once (what it holds
// may have been read after an undone Delete) and the namespace owes an
// epoch move, made right away if L2 answers: the keys written before the
// change are never read again. The shards held until a check (see shard)
// are released once it has run, or, if it keeps failing, after at most
// LineageInterval + 2 × L2Timeout. It runs on the replayer's goroutine
// (and once in New).
func (c *Cache[V]) checkLineage(ctx context.Context) {
	start := c.now()
	c.checked = time.Now()
	lctx, cancel := context.WithTimeout(ctx, c.o.L2Timeout)
	tok, err := c.lineage.Lineage(lctx)
	cancel()
	defer func() {
		if c.brs.held.Load() == 0 {
			return
		}
		if err == nil {
			c.brs.release(start)
		} else {
			c.brs.release(c.now() - int64(c.o.LineageInterval+2*c.o.L2Timeout))
		}
	}()
	if err != nil || tok == c.lastLineage {
		return
	}
	prev := c.lastLineage
	c.lastLineage = tok
	c.lineageKnown.Store(true)
	if prev == "" {
		return
	}
	c.ctr.failovers.Add(1)
	c.untrust(c.now()+1, ReasonL2Failover)
	if c.epocher != nil {
		c.oweEpochMove(ReasonL2Failover)
		c.moveEpoch(ctx)
	}
}
