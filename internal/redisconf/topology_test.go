package redisconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

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
