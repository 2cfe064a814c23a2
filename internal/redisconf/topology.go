package redisconf

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReloadEvery bounds how often a [Topology] asks a ClusterClient to re-read
// its slot map.
const ReloadEvery = 250 * time.Millisecond

// Topology follows a Cluster's topology on a primitive's data path.
// go-redis's ClusterClient re-reads the slot map only on MOVED or READONLY
// replies or every ClusterStateReloadInterval (60 s by default), dialling
// a dead master meanwhile; after a connection error (the server did not
// answer), Failed asks it to reload (ClusterClient.ReloadState, in the
// background), at most every ReloadEvery. It does nothing for other
// clients. It is safe for concurrent use; the zero value does nothing.
type Topology struct {
	cluster    *redis.ClusterClient
	lastReload atomic.Int64
}

// NewTopology returns the Topology of client.
func NewTopology(client redis.UniversalClient) *Topology {
	c, _ := client.(*redis.ClusterClient)
	return &Topology{cluster: c}
}

// Failed records the error of a call; a connection error, or a redirection
// or cluster-state reply to a call made on a node's own client (see
// [Topology.Master]), makes a Cluster client reload its slot map.
func (t *Topology) Failed(err error) {
	if IsConnError(err) || isTopologyReply(err) {
		t.Reload()
	}
}

// Reload asks a Cluster client to re-read its slot map (in the
// background), unless this Topology asked less than ReloadEvery ago.
func (t *Topology) Reload() {
	if t == nil || t.cluster == nil {
		return
	}
	now := time.Now().UnixNano()
	last := t.lastReload.Load()
	if now-last < int64(ReloadEvery) || !t.lastReload.CompareAndSwap(last, now) {
		return
	}
	t.cluster.ReloadState(context.Background())
}

// IsConnError reports whether err means the server did not answer (a dial,
// I/O or timeout error, a closed connection), as opposed to a reply
// (redis.Nil, or an error reply such as WRONGTYPE or MOVED) or the
// caller's cancellation.
func IsConnError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

func isTopologyReply(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "CLUSTERDOWN", "READONLY", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// Master returns the client that talks to the master of key's slot: for a
// ClusterClient the node's client, for any other client the client itself.
// Commands that must run on the connection that wrote key (WAIT) go
// through it.
func (t *Topology) Master(ctx context.Context, client redis.UniversalClient, key string) (redis.Cmdable, error) {
	if t == nil || t.cluster == nil {
		return client, nil
	}
	return t.cluster.MasterForKey(ctx, key)
}
