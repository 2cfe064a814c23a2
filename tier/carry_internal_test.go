package tier

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// One round trip carries at most maxCarryWrites writes of one shard, and
// values of about maxCarryBytes (at least one write, however large).
func TestTakeQueued_OneShardBoundedBatch(t *testing.T) {
	c := &Cache[string]{}
	c.wq.timer = time.AfterFunc(time.Hour, func() {})
	t.Cleanup(func() { c.wq.timer.Stop() })
	a, b := &shard{}, &shard{}
	queue := func(br *shard, size int) {
		c.wq.q = append(c.wq.q, &flight[string]{wshard: br, write: LeasedWrite{Value: make([]byte, size)}})
	}
	for range maxCarryWrites + 6 {
		queue(a, 10)
	}
	queue(b, 10)
	require.Len(t, c.takeQueued(b), 1)
	require.Len(t, c.takeQueued(a), maxCarryWrites)
	require.Len(t, c.takeQueued(nil), 6)
	require.Empty(t, c.takeQueued(nil))

	queue(a, 2*maxCarryBytes)
	queue(a, 10)
	queue(b, 10)
	require.Len(t, c.takeQueued(nil), 1, "a write over the byte bound goes alone")
	require.Len(t, c.takeQueued(nil), 1, "the oldest's shard first")
	require.Len(t, c.takeQueued(nil), 1)
	require.Empty(t, c.wq.q)
	require.False(t, c.wq.armed)
}
