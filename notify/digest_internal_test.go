package notify

import (
	"fmt"
	"testing"

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
