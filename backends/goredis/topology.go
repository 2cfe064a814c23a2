package goredis

import (
	"context"
	"time"

	"github.com/tiercache/tiercache/internal/redisconf"
	"github.com/tiercache/tiercache/tier"
)

var _ tier.Sharder = (*Backend)(nil)

// shardLookupTimeout bounds the one slot lookup that may block: the first,
// when the ClusterClient has not loaded its slot map yet.
const shardLookupTimeout = 100 * time.Millisecond

// topology follows a Cluster's topology on the data path: a connection
// error (not a Redis error reply: the server did not answer) may mean that
// the master of a slot died, and go-redis's ClusterClient re-reads the slot
// map only on MOVED or READONLY replies or every
// ClusterStateReloadInterval (60 s by default), dialling the dead master
// meanwhile. So on such errors the Backend asks it to reload
// (redisconf.Topology.Reload: ClusterClient.ReloadState, which runs in the
// background), at most every 250 ms (redisconf.ReloadEvery): the slots of a
// killed master move to the promoted replica within the cluster's failover
// time plus a reload. Error replies (MOVED and the like) are left to the
// ClusterClient, which follows them itself.
func (b *Backend) topology(err error) {
	if b.cluster != nil && redisconf.IsConnError(err) {
		b.topo.Reload()
	}
}

// Shard implements tier.Sharder: for a ClusterClient, the address of the
// master that serves key's slot now (the cache keeps one circuit breaker
// per shard, so a dead master does not stop the calls to the others); ""
// for any other client, whose keys all live on one server. It answers from
// the client's slot map; only before the map is first loaded may it wait,
// for at most 100 ms.
func (b *Backend) Shard(key string) string {
	if b.cluster == nil {
		return ""
	}
	ctx := context.Background()
	if !b.slotsLoaded.Load() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, shardLookupTimeout)
		defer cancel()
	}
	m, err := b.cluster.MasterForKey(ctx, key)
	if err != nil {
		return ""
	}
	b.slotsLoaded.Store(true)
	return m.Options().Addr
}
