package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func entriesAt(ms ...int64) []entry {
	es := make([]entry, len(ms))
	for i, m := range ms {
		es[i] = entry{id: fmt.Sprintf("%d-%d", m, i), ms: m}
	}
	return es
}

func sizes(ds [][]entry) []int {
	var s []int
	for _, d := range ds {
		s = append(s, len(d))
	}
	return s
}

func TestWindow_plan(t *testing.T) {
	t.Parallel()
	w := window{maxDelay: 100, maxItems: 3}
	tests := []struct {
		name      string
		es        []entry
		now       int64
		truncated bool
		lastMs    int64
		ready     []int
		rest      int
		next      int64
	}{
		{name: "open window waits", es: entriesAt(10, 20), now: 50, rest: 2, next: 110},
		{name: "full window goes at once", es: entriesAt(10, 20, 30, 40), now: 50, ready: []int{3}, rest: 1, next: 140},
		{name: "closed window", es: entriesAt(10, 20, 115), now: 120, ready: []int{2}, rest: 1, next: 215},
		{name: "every window closed", es: entriesAt(10, 20, 115), now: 300, ready: []int{2, 1}},
		{name: "truncated read holds a window that may miss entries", es: entriesAt(10, 20), now: 300, truncated: true, lastMs: 20, rest: 2, next: 110},
		{name: "truncated read past the window", es: entriesAt(10, 20, 200), now: 300, truncated: true, lastMs: 200, ready: []int{2}, rest: 1, next: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ready, rest, next := w.plan(tt.es, tt.now, tt.truncated, tt.lastMs)
			require.Equal(t, tt.ready, sizes(ready))
			require.Equal(t, tt.rest, rest)
			require.Equal(t, tt.next, next)
		})
	}
}

func TestProviderKey(t *testing.T) {
	t.Parallel()
	a := ProviderKey("u1", Email, []string{"1-0", "2-0"})
	require.Equal(t, a, ProviderKey("u1", Email, []string{"1-0", "2-0"}))
	require.NotEqual(t, a, ProviderKey("u1", SMS, []string{"1-0", "2-0"}))
	require.NotEqual(t, a, ProviderKey("u1", Email, []string{"1-0"}))
	require.NotEqual(t, a, ProviderKey("u2", Email, []string{"1-0", "2-0"}))
	require.Len(t, a, 32)
}

func TestPreferences_quietUntil(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	at := func(s string) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		require.NoError(t, err)
		return tm.UnixMilli()
	}
	night := Preferences{TimeZone: "Europe/Paris", QuietFrom: 22 * time.Hour, QuietUntil: 7 * time.Hour}
	lunch := Preferences{TimeZone: "Europe/Paris", QuietFrom: 12 * time.Hour, QuietUntil: 14 * time.Hour, QuietChannels: []Channel{Push}}
	tests := []struct {
		name string
		p    Preferences
		ch   Channel
		now  string
		want string // "" means not held
	}{
		{name: "evening, before midnight", p: night, ch: Email, now: "2026-12-06 22:30", want: "2026-12-07 07:00"},
		{name: "after midnight", p: night, ch: SMS, now: "2026-12-07 03:00", want: "2026-12-07 07:00"},
		{name: "quiet hours over", p: night, ch: Push, now: "2026-12-07 07:00"},
		{name: "daytime", p: night, ch: Push, now: "2026-12-07 15:00"},
		{name: "starts at from", p: night, ch: Push, now: "2026-12-07 22:00", want: "2026-12-08 07:00"},
		{name: "same-day window", p: lunch, ch: Push, now: "2026-12-07 12:15", want: "2026-12-07 14:00"},
		{name: "channel not held", p: lunch, ch: Email, now: "2026-12-07 12:15"},
		{name: "spring forward night", p: night, ch: Push, now: "2026-03-28 23:00", want: "2026-03-29 07:00"},
		{name: "no quiet hours", p: Preferences{}, ch: Push, now: "2026-12-07 03:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.p.quietUntil(tt.ch, at(tt.now))
			require.NoError(t, err)
			if tt.want == "" {
				require.Zero(t, got)
				return
			}
			require.Equal(t, at(tt.want), got, "got %v", time.UnixMilli(got).In(paris))
		})
	}
	_, err = Preferences{TimeZone: "Nowhere/Land", QuietFrom: time.Hour}.quietUntil(Push, 0)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = Preferences{QuietFrom: 25 * time.Hour}.quietUntil(Push, 0)
	require.ErrorIs(t, err, ErrInvalidOptions)
}
