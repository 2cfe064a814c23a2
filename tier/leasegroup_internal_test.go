package tier

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// joinAsync runs g.join(lc) on a goroutine and returns where its result
// arrives; it returns once lc is queued.
func joinAsync(t *testing.T, g *leaseGroup, lc *leaseCall, trips int) chan joined {
	t.Helper()
	queued := make(chan struct{})
	res := make(chan joined, 1)
	go func() {
		batch, err := g.join(lc, trips, func() { close(queued) })
		res <- joined{batch, err}
	}()
	<-queued
	return res
}

type joined struct {
	batch []*leaseCall
	err   error
}

func newCall(ctx context.Context) *leaseCall { return &leaseCall{ctx: ctx} }

// A miss sends at once while the shard has a free trip; the ones that come
// meanwhile queue, and when a trip is back its sender hands them, as one
// batch (at most maxLeaseBatch), to the oldest; a sender that finds no one
// waiting gives its trip back.
func TestLeaseGroup_QueuedCallsShareTheNextTrip(t *testing.T) {
	var g leaseGroup
	ctx := context.Background()
	first, err := g.join(newCall(ctx), 1, nil)
	require.NoError(t, err)
	require.Len(t, first, 1, "a free trip: sent at once")

	calls := make([]*leaseCall, maxLeaseBatch+3)
	res := make([]chan joined, len(calls))
	for i := range calls {
		calls[i] = newCall(ctx)
		res[i] = joinAsync(t, &g, calls[i], 1)
	}
	g.next() // the first trip is back
	got := <-res[0]
	require.NoError(t, got.err)
	require.Equal(t, calls[:maxLeaseBatch], got.batch, "the oldest sends the oldest maxLeaseBatch, itself first")
	for _, lc := range got.batch[1:] { // what sendLeases does
		close(lc.done)
	}
	for i := 1; i < maxLeaseBatch; i++ {
		got := <-res[i]
		require.NoError(t, got.err)
		require.Nil(t, got.batch, "answered by the sender")
	}
	g.next()
	got = <-res[maxLeaseBatch]
	require.Equal(t, calls[maxLeaseBatch:], got.batch, "the rest go with the next trip")
	for _, lc := range got.batch[1:] {
		close(lc.done)
	}
	for i := maxLeaseBatch + 1; i < len(calls); i++ {
		require.Nil(t, (<-res[i]).batch)
	}
	g.next()
	require.Zero(t, g.trips, "no one waits: the trip is given back")
	require.Empty(t, g.queue)
}

// A queued call whose context ends leaves the queue with the context's
// error, and the others are not disturbed.
func TestLeaseGroup_QueuedCallLeavesWhenItsContextEnds(t *testing.T) {
	var g leaseGroup
	_, err := g.join(newCall(context.Background()), 1, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	leaving := newCall(ctx)
	left := joinAsync(t, &g, leaving, 1)
	staying := newCall(context.Background())
	stays := joinAsync(t, &g, staying, 1)
	cancel()
	got := <-left
	require.ErrorIs(t, got.err, context.Canceled)
	require.Nil(t, got.batch)
	g.next()
	got = <-stays
	require.NoError(t, got.err)
	require.Equal(t, []*leaseCall{staying}, got.batch, "the call that left is not sent")
}

// A call handed a batch after its context ended sends nothing: the next
// call in the batch becomes its sender.
func TestLeaseGroup_ExpiredSenderHandsTheBatchOn(t *testing.T) {
	var g leaseGroup
	_, err := g.join(newCall(context.Background()), 1, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	expired := joinAsync(t, &g, newCall(ctx), 1)
	live := newCall(context.Background())
	sends := joinAsync(t, &g, live, 1)
	cancel()
	g.next() // before or after the expired call saw its context end
	got := <-expired
	require.ErrorIs(t, got.err, context.Canceled)
	require.Nil(t, got.batch)
	got = <-sends
	require.NoError(t, got.err)
	require.Equal(t, []*leaseCall{live}, got.batch)
}
