package tier

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The first L2 round trip of a miss is the get-or-lease pipeline once more
// than about one L2 read in five misses, and a plain read below that, and
// the choice holds steady at a steady ratio (see missScore for the costs).
func TestMissScore_LeaseFirstOnceOneReadInFiveMisses(t *testing.T) {
	for _, tc := range []struct {
		every int // one miss in every reads
		want  bool
	}{
		{every: 1, want: true},
		{every: 2, want: true},
		{every: 4, want: true},
		{every: 8, want: false},
		{every: 20, want: false},
	} {
		var m missScore
		for i := range 1000 {
			m.note(i%tc.every == 0)
		}
		for i := range 100 {
			m.note(i%tc.every == 0)
			require.Equal(t, tc.want, m.leaseFirst(), "one miss in %d reads, read %d", tc.every, 1000+i)
		}
	}
}
