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

// answer does what sendLeases does for the calls of batch it answers.
func answer(batch []*leaseCall) {
	for _, lc := range batch[:len(batch)-1] {
		close(lc.done)
	}
}

// A miss sends at once while the shard has a free trip; the ones that come
// meanwhile queue, and when a trip is back its sender hands the oldest of
// them, as one batch (at most maxLeaseBatch), to the newest in it; a sender
// that finds no one waiting gives its trip back.
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
	g.pass(nil) // the first trip is back
	got := <-res[maxLeaseBatch-1]
	require.NoError(t, got.err)
	require.Equal(t, calls[:maxLeaseBatch], got.batch, "the newest of the oldest maxLeaseBatch sends them")
	answer(got.batch)
	for i := range maxLeaseBatch - 1 {
		got := <-res[i]
		require.NoError(t, got.err)
		require.Nil(t, got.batch, "answered by the sender")
	}
	g.pass(nil)
	got = <-res[len(calls)-1]
	require.Equal(t, calls[maxLeaseBatch:], got.batch, "the rest go with the next trip")
	answer(got.batch)
	for i := maxLeaseBatch; i < len(calls)-1; i++ {
		require.Nil(t, (<-res[i]).batch)
	}
	g.pass(nil)
	require.Zero(t, g.trips, "no one waits: the trip is given back")
	require.Empty(t, g.queue)
}

// A queued call whose context ends leaves the queue, unsent, and the others
// are not disturbed.
func TestLeaseGroup_QueuedCallLeavesWhenItsContextEnds(t *testing.T) {
	var g leaseGroup
	_, err := g.join(newCall(context.Background()), 1, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	left := joinAsync(t, &g, newCall(ctx), 1)
	staying := newCall(context.Background())
	stays := joinAsync(t, &g, staying, 1)
	cancel()
	got := <-left
	require.ErrorIs(t, got.err, errNotSent)
	require.ErrorIs(t, got.err, context.Canceled)
	require.Nil(t, got.batch)
	g.pass(nil)
	got = <-stays
	require.NoError(t, got.err)
	require.Equal(t, []*leaseCall{staying}, got.batch, "the call that left is not sent")
}

// A call whose round trip is on its way returns when its context ends,
// without waiting for its sender.
func TestLeaseGroup_CallOnItsWayLeavesWhenItsContextEnds(t *testing.T) {
	var g leaseGroup
	_, err := g.join(newCall(context.Background()), 1, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	leaving := newCall(ctx)
	left := joinAsync(t, &g, leaving, 1)
	sender := newCall(context.Background())
	sends := joinAsync(t, &g, sender, 1)
	g.pass(nil)
	got := <-sends
	require.Equal(t, []*leaseCall{leaving, sender}, got.batch)
	cancel() // while the batch is on its way
	got = <-left
	require.ErrorIs(t, got.err, context.Canceled)
	require.NotErrorIs(t, got.err, errNotSent, "it was sent")
	answer([]*leaseCall{leaving, sender}) // the sender answers a call that left
}

// A call handed a batch after its context ended sends nothing: the newest
// of the rest becomes its sender.
func TestLeaseGroup_ExpiredSenderHandsTheBatchOn(t *testing.T) {
	var g leaseGroup
	g.trips = 1
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	expired := &leaseCall{ctx: ctx}
	older, live := newCall(context.Background()), newCall(context.Background())
	live.done = make(chan struct{})
	batch, err := g.take(expired, []*leaseCall{older, live, expired})
	require.ErrorIs(t, err, errNotSent)
	require.Nil(t, batch)
	<-live.done
	require.Equal(t, []*leaseCall{older, live}, live.batch, "the newest live call sends the rest")
	require.Equal(t, 1, g.trips, "the trip went with the batch")
}

// A call that left while a batch held it, before that batch was sent, is
// never made its sender: an expired sender hands the batch to the newest
// call still waiting, without the one that left, and with no one waiting
// the trip goes back to the group (before, it went to the call that left,
// and the shard kept a trip no one would give back: every later miss of
// the shard queued until its deadline).
func TestLeaseGroup_CallThatLeftIsNeverHandedTheBatch(t *testing.T) {
	for _, olderWaits := range []bool{true, false} {
		t.Run(map[bool]string{true: "an older call waits", false: "no one waits"}[olderWaits], func(t *testing.T) {
			var g leaseGroup
			_, err := g.join(newCall(context.Background()), 1, nil) // the trip on its way
			require.NoError(t, err)
			older := newCall(context.Background())
			var olderRes chan joined
			if olderWaits {
				olderRes = joinAsync(t, &g, older, 1)
			}
			leaveCtx, leave := context.WithCancel(context.Background())
			leaving := newCall(leaveCtx)
			left := joinAsync(t, &g, leaving, 1)
			senderCtx, expire := context.WithCancel(context.Background())
			sender := newCall(senderCtx)
			sends := joinAsync(t, &g, sender, 1)
			g.pass(nil) // the trip is back: sender is to send the batch
			batch := (<-sends).batch
			require.Equal(t, sender, batch[len(batch)-1])
			leave() // before the batch is sent
			got := <-left
			require.ErrorIs(t, got.err, context.Canceled)
			require.Nil(t, got.batch)
			expire() // the sender's deadline ends before it sends (join's take)
			_, err = g.take(sender, batch)
			require.ErrorIs(t, err, errNotSent)
			require.Nil(t, leaving.batch, "the call that left was not handed the batch")
			if olderWaits {
				got := <-olderRes
				require.NoError(t, got.err)
				require.Equal(t, []*leaseCall{older}, got.batch, "the newest call still waiting sends, without the one that left")
				g.pass(nil) // its round trip is back
			}
			require.Zero(t, g.trips, "the trip went back to the group")
		})
	}
}
