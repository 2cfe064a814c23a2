// topology.go holds where the bus publishes each channel: one server, Sentinel or Cluster.

package invalidate

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// topology knows the shape of the deployment behind the bus's client.
type topology struct {
	c       redis.UniversalClient
	cluster *redis.ClusterClient // nil unless c is a Cluster client
}

func newTopology(c redis.UniversalClient) *topology {
	t := &topology{c: c}
	t.cluster, _ = c.(*redis.ClusterClient)
	return t
}

// publisher returns the node channel's messages are published on, and a
// key naming it (messages with the same key share a pipeline).
//
// On Cluster, a keyless PUBLISH sent to any master reaches every node, but
// a message published on another node than the subscriber's arrives later,
// through the cluster bus: one origin's messages, spread over the masters
// as go-redis spreads keyless commands, are reordered. Every message of a
// channel goes to the master of the channel's slot instead, as go-redis
// sees the slot map at the time of the flush, so it follows slot moves and
// failovers as soon as the client's map does.
func (t *topology) publisher(ctx context.Context, channel string) (redis.Cmdable, string, error) {
	if t.cluster == nil {
		return t.c, "", nil
	}
	n, err := t.cluster.MasterForKey(ctx, channel)
	if err != nil {
		return nil, "", err
	}
	return n, n.Options().Addr, nil
}
