package redisconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// replyError is an error reply as go-redis returns them (redis.Error).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestIsConnError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		conn bool
		topo bool
	}{
		{name: "nil", err: nil},
		{name: "miss", err: redis.Nil},
		{name: "canceled", err: fmt.Errorf("call: %w", context.Canceled)},
		{name: "dial", err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}, conn: true},
		{name: "deadline", err: context.DeadlineExceeded, conn: true},
		{name: "error reply", err: replyError("WRONGTYPE Operation against a key holding the wrong kind of value")},
		{name: "moved", err: replyError("MOVED 3999 127.0.0.1:6381"), topo: true},
		{name: "clusterdown", err: replyError("CLUSTERDOWN The cluster is down"), topo: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.conn, IsConnError(tt.err))
			require.Equal(t, tt.topo, tt.err != nil && isTopologyReply(tt.err))
		})
	}
	var zero *Topology
	zero.Failed(errors.New("x")) // a nil Topology does nothing
	c := redis.NewClient(&redis.Options{})
	t.Cleanup(func() { _ = c.Close() })
	NewTopology(c).Failed(errors.New("x")) // nor does one of a single-node client
}

// TestTopology_ReloadRateLimited checks that a Cluster client's Topology
// asks for a reload at most once per ReloadEvery, whether through Failed
// or Reload.
func TestTopology_ReloadRateLimited(t *testing.T) {
	t.Parallel()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	topo := NewTopology(c)
	topo.Failed(replyError("WRONGTYPE Operation against a key holding the wrong kind of value"))
	require.Zero(t, topo.lastReload.Load(), "an error reply is not a topology change")
	topo.Failed(context.DeadlineExceeded)
	require.NotZero(t, topo.lastReload.Load(), "a connection error asks for a reload")
	// A reload stamped in the future is always less than ReloadEvery ago,
	// so the check below does not depend on how fast this test runs.
	recent := time.Now().Add(time.Hour).UnixNano()
	topo.lastReload.Store(recent)
	topo.Reload()
	topo.Failed(replyError("MOVED 3999 127.0.0.1:6381"))
	require.Equal(t, recent, topo.lastReload.Load(), "a second reload within ReloadEvery")
	topo.lastReload.Store(time.Now().Add(-time.Hour).UnixNano())
	topo.Reload()
	require.Greater(t, topo.lastReload.Load(), time.Now().Add(-time.Hour).UnixNano(), "a reload once ReloadEvery has passed")
}
