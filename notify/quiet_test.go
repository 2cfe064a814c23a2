package notify_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/notify"
	"github.com/tiercache/tiercache/tier"
)

// TestConsumer_QuietHours: a user's quiet hours (22:00 to 07:00 in
// Europe/Paris, for push and SMS) come from preferences read through a
// tier cache. On a fake clock at 22:30 the user's push digest is ready
// (full) but held, while the email digest, not held, goes out; the user
// is due again at 07:00 local. At 06:59 nothing is sent; at 07:00 the
// push digest goes out. No sleep: the consumer's clock is the test's.
func TestConsumer_QuietHours(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	obs := &countObserver{}
	q := newQueue(t, rdb, notify.Options{MaxItems: 3, MaxDelay: time.Hour, Shards: 1, Observer: obs})

	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	// The fake clock starts at the first 22:30 in Paris after now, so that
	// every index score written with Redis's clock is already due on it.
	n := time.Now().In(paris).Add(time.Minute)
	start := time.Date(n.Year(), n.Month(), n.Day(), 22, 30, 0, 0, paris)
	if start.Before(n) {
		start = time.Date(n.Year(), n.Month(), n.Day()+1, 22, 30, 0, 0, paris)
	}
	end := time.Date(start.Year(), start.Month(), start.Day()+1, 7, 0, 0, 0, paris)
	var clock atomic.Int64
	clock.Store(start.UnixMilli())

	cache, err := tier.New(&tier.Options[notify.Preferences]{Name: "prefs", TTL: 48 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, cache.Close()) })
	var loads atomic.Int32
	prefs := notify.CachedPreferences(cache, func(_ context.Context, user string) (notify.Preferences, error) {
		require.Equal(t, "ada", user)
		loads.Add(1)
		return notify.Preferences{TimeZone: "Europe/Paris", QuietFrom: 22 * time.Hour, QuietUntil: 7 * time.Hour,
			QuietChannels: []notify.Channel{notify.Push, notify.SMS}}, nil
	})

	push := enqueueN(t, q, "ada", notify.Push, 3)
	email := enqueueN(t, q, "ada", notify.Email, 3)
	rec := &notify.RecordingSender{}
	c := newConsumer(t, q, notify.ConsumerOptions{Sender: rec, Preferences: prefs,
		Now: func() time.Time { return time.UnixMilli(clock.Load()) }})
	runOnce := func() int {
		n, err := c.RunOnce(t.Context())
		require.NoError(t, err)
		return n
	}

	require.Equal(t, 1, runOnce())
	msgs := rec.Delivered()
	require.Len(t, msgs, 1, "only the email digest goes out at 22:30")
	require.Equal(t, notify.Email, msgs[0].Channel)
	require.Equal(t, email, itemIDs(msgs[0]))
	require.EqualValues(t, 1, obs.n(notify.EventHeld))
	score, err := rdb.ZScore(t.Context(), "notify:{ix0}:due", "ada").Result()
	require.NoError(t, err)
	require.Equal(t, strconv.FormatInt(end.UnixMilli(), 10), strconv.FormatFloat(score, 'f', -1, 64),
		"the user is due again when the quiet hours end")
	require.Positive(t, loads.Load())
	require.Eventually(t, func() bool { _, ok := cache.GetIfPresent("ada"); return ok }, 10*time.Second, time.Millisecond,
		"the preferences are held by the tier cache")

	clock.Store(end.Add(-time.Minute).UnixMilli())
	require.Zero(t, runOnce(), "06:59: the user is not due")
	require.Len(t, rec.Delivered(), 1)

	clock.Store(end.UnixMilli())
	require.Equal(t, 1, runOnce())
	msgs = rec.Delivered()
	require.Len(t, msgs, 2, "07:00: the held push digest goes out")
	require.Equal(t, notify.Push, msgs[1].Channel)
	require.Equal(t, push, itemIDs(msgs[1]))
	require.EqualValues(t, 1, obs.n(notify.EventHeld))
	require.Zero(t, runOnce(), "nothing left")
}

// itemIDs returns a message's items as user/entry ids, as enqueueN does.
func itemIDs(m notify.Message) []string {
	ids := make([]string, len(m.Items))
	for i, it := range m.Items {
		ids[i] = m.User + "/" + it.ID
	}
	return ids
}

// TestConsumer_PreferencesUnreadable: when a user's preferences cannot be
// read, a ready digest is held for RetryDelay (not sent in what may be
// the user's night), counted as held with the error, and sent once they
// can be read.
func TestConsumer_PreferencesUnreadable(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	obs := &countObserver{}
	q := newQueue(t, rdb, notify.Options{MaxItems: 2, MaxDelay: time.Hour, Shards: 1, Observer: obs})
	var clock atomic.Int64
	clock.Store(time.Now().Add(time.Minute).UnixMilli())
	var broken atomic.Bool
	broken.Store(true)
	errDB := errors.New("database down")
	rec := &notify.RecordingSender{}
	c := newConsumer(t, q, notify.ConsumerOptions{Sender: rec, RetryDelay: time.Minute,
		Now: func() time.Time { return time.UnixMilli(clock.Load()) },
		Preferences: notify.PreferenceFunc(func(context.Context, string) (notify.Preferences, error) {
			if broken.Load() {
				return notify.Preferences{}, errDB
			}
			return notify.Preferences{}, nil
		})})
	enqueueN(t, q, "bob", notify.SMS, 2)
	n, err := c.RunOnce(t.Context())
	require.Equal(t, 1, n)
	require.ErrorIs(t, err, errDB)
	require.Empty(t, rec.Delivered())
	require.EqualValues(t, 1, obs.n(notify.EventHeld))
	score, err := rdb.ZScore(t.Context(), "notify:{ix0}:due", "bob").Result()
	require.NoError(t, err)
	require.InDelta(t, float64(clock.Load()+time.Minute.Milliseconds()), score, 0)

	broken.Store(false)
	clock.Add(time.Minute.Milliseconds())
	n, err = c.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, rec.Delivered(), 1)
}

// TestConsumer_PreferencesInvalid: quiet hours in an unknown time zone
// cannot be applied: the digest goes out, and RunOnce says why.
func TestConsumer_PreferencesInvalid(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	q := newQueue(t, srv.Client(t), notify.Options{MaxItems: 2, MaxDelay: time.Hour, Shards: 1})
	rec := &notify.RecordingSender{}
	c := newConsumer(t, q, notify.ConsumerOptions{Sender: rec,
		Preferences: notify.PreferenceFunc(func(context.Context, string) (notify.Preferences, error) {
			return notify.Preferences{TimeZone: "Nowhere/Land", QuietFrom: 0, QuietUntil: 23 * time.Hour}, nil
		})})
	enqueueN(t, q, "eve", notify.Push, 2)
	n, err := c.RunOnce(t.Context())
	require.Equal(t, 1, n)
	require.ErrorIs(t, err, notify.ErrInvalidOptions)
	require.Len(t, rec.Delivered(), 1)
}
