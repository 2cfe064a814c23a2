package goredis

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tier"
)

var _ tier.Sharder = (*Backend)(nil)

// reloadEvery bounds how often a Backend asks a ClusterClient to re-read
// the slot map after connection errors.
const reloadEvery = 250 * time.Millisecond

// shardLookupTimeout bounds the one slot lookup that may block: the first,
// when the ClusterClient has not loaded its slot map yet.
const shardLookupTimeout = 100 * time.Millisecond

// topology follows a Cluster's topology on the data path: a connection
// error (not a Redis error reply: the server did not answer) may mean that
// the master of a slot died, and go-redis's ClusterClient re-reads the slot
// map only on MOVED or READONLY replies or every
// ClusterStateReloadInterval (60 s by default), dialling the dead master
// meanwhile. So on such errors the Backend asks it to reload
// (ClusterClient.ReloadState, which runs in the background), at most every
// 250 ms: the slots of a killed master move to the promoted replica within
// the cluster's failover time plus a reload.
func (b *Backend) topology(err error) {
	if b.cluster == nil || !isConnError(err) {
		return
	}
	now := time.Now().UnixNano()
	last := b.lastReload.Load()
	if now-last < int64(reloadEvery) || !b.lastReload.CompareAndSwap(last, now) {
		return
	}
	b.cluster.ReloadState(context.Background())
}

// isConnError reports whether err means the server did not answer (a
// dial, I/O or timeout error, a closed connection), as opposed to a reply
// (redis.Nil, or an error reply such as WRONGTYPE or MOVED) or the
// caller's cancellation.
func isConnError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply)
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
