// topology.go holds where the bus publishes and subscribes (one server, Sentinel, Cluster), and the probe that checks it.

package invalidate

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// suspectFor is how long a Cluster node whose connection failed is
	// avoided, for publishing and subscribing, while the slot map still
	// names it.
	suspectFor = 5 * time.Second
	// reloadEvery bounds how often the bus asks a Cluster client to reload
	// its slot map.
	reloadEvery = 250 * time.Millisecond
)

// fallbackKeys are keys spread over the slots: their masters, in this
// order, are where a channel is published or subscribed when its own
// master is avoided. Every channel and every flush picks the same one, so
// an origin's messages stay on one node.
var fallbackKeys = func() []string {
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "tc:node:" + strconv.Itoa(i)
	}
	return keys
}()

// topology knows the shape of the deployment behind the bus's client and
// picks the nodes the bus uses. It is safe for concurrent use.
type topology struct {
	c       redis.UniversalClient // immutable
	cluster *redis.ClusterClient  // c on Cluster, else nil; immutable
	// probe: c is go-redis's Sentinel failover client, where the bus
	// checks at each heartbeat that it is subscribed on the node it
	// publishes to (see [Bus.checkProbe]). Immutable.
	probe bool

	mu         sync.Mutex
	suspect    map[string]int64 // Cluster node address → when its connection last failed (unix nanos); guarded by mu
	lastReload int64            // unix nanos; guarded by mu
}

func newTopology(c redis.UniversalClient) *topology {
	t := &topology{c: c, suspect: map[string]int64{}}
	t.cluster, _ = c.(*redis.ClusterClient)
	if rc, ok := c.(*redis.Client); ok {
		t.probe = isFailoverClient(rc)
	}
	return t
}

// isFailoverClient reports whether c was made by redis.NewFailoverClient:
// go-redis gives such a client the address "FailoverClient", as it has
// since v8 (TestTopology_Kinds checks it still does).
func isFailoverClient(c *redis.Client) bool { return c.Options().Addr == "FailoverClient" }

// publisher returns the node channel's messages are published on, and a
// key naming it (messages with the same key share a pipeline).
//
// On Cluster, a keyless PUBLISH sent to any master reaches every node, but
// a message published on another node than the subscriber's arrives later,
// through the cluster bus: one origin's messages, spread over the masters
// as go-redis spreads keyless commands, are reordered. Every message of a
// channel goes to the master of the channel's slot instead, as go-redis
// sees the slot map at the time of the flush, so it follows slot moves and
// failovers as soon as the client's map does. A master whose connection
// failed is avoided for suspectFor (see [topology.node]).
func (t *topology) publisher(ctx context.Context, channel string) (redis.Cmdable, string, error) {
	if t.cluster == nil {
		return t.c, "", nil
	}
	n, err := t.node(ctx, channel)
	if err != nil {
		return nil, "", err
	}
	return n, n.Options().Addr, nil
}

// subscription returns a new, not yet connected subscription, and on
// Cluster the address of the node it is bound to ("" otherwise).
//
// On Cluster, every node hears every PUBLISH, so any live node will do: it
// is the master of channel's slot (the node this instance publishes it
// on, so its own messages take no cluster-bus hop), or another master if
// that one failed recently. The subscription is bound to that node
// (go-redis's own cluster subscription would pick the node from the slot
// map, which names a dead master until it is reloaded).
func (t *topology) subscription(ctx context.Context, channel string) (*redis.PubSub, string) {
	if t.cluster != nil {
		if n, err := t.node(ctx, channel); err == nil {
			return n.Subscribe(ctx), n.Options().Addr
		}
	}
	return t.c.Subscribe(ctx), ""
}

// node returns the master of key's slot, unless its connection failed
// within suspectFor; then the first master of fallbackKeys that has not.
// If every master failed recently, it returns key's own.
func (t *topology) node(ctx context.Context, key string) (*redis.Client, error) {
	n, err := t.cluster.MasterForKey(ctx, key)
	if err != nil || !t.suspected(n.Options().Addr) {
		return n, err
	}
	for _, k := range fallbackKeys {
		if f, err := t.cluster.MasterForKey(ctx, k); err == nil && !t.suspected(f.Options().Addr) {
			return f, nil
		}
	}
	return n, nil
}

// suspected reports whether addr's connection failed within suspectFor.
func (t *topology) suspected(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.suspect[addr]
	return ok && time.Now().UnixNano()-at < int64(suspectFor)
}

// failed records that the connection to the Cluster node at addr failed,
// and asks the client to reload its slot map. It does nothing for addr "".
func (t *topology) failed(addr string) {
	if t.cluster == nil || addr == "" {
		return
	}
	t.mu.Lock()
	t.suspect[addr] = time.Now().UnixNano()
	t.mu.Unlock()
	t.reload()
}

// troubled reports whether a Cluster node failed within suspectFor.
func (t *topology) troubled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now().UnixNano()
	for addr, at := range t.suspect {
		if now-at < int64(suspectFor) {
			return true
		}
		delete(t.suspect, addr)
	}
	return false
}

// reload asks a Cluster client to reload its slot map, at most once per
// reloadEvery. go-redis reloads it on its own only on a MOVED or READONLY
// reply, or every ClusterStateReloadInterval (60 s by default): after a
// master dies it keeps naming it until then, and the bus's PUBLISH, which
// has no key, never gets a MOVED. It does not block (go-redis reloads in
// the background).
func (t *topology) reload() {
	if t.cluster == nil {
		return
	}
	now := time.Now().UnixNano()
	t.mu.Lock()
	due := now-t.lastReload >= int64(reloadEvery)
	if due {
		t.lastReload = now
	}
	t.mu.Unlock()
	if due {
		t.cluster.ReloadState(context.Background())
	}
}

// retries reports whether a publish that failed on a connection error is
// worth retrying at once: on Cluster, on another node.
func (t *topology) retries() bool { return t.cluster != nil }

// probeChannel returns the channel only the bus of instance subscribes to.
// Namespace channels start with "tc:" and a digit, so it is none of them.
func probeChannel(instance string) string { return "tc:probe:" + instance }

// The probe. go-redis's Sentinel failover client moves its data
// connections to the new master when its Sentinel announces
// +switch-master, but not its pub/sub connections: after a SENTINEL
// FAILOVER the old master stays a master (Sentinel turns it into a replica
// about ten seconds later), the bus would stay subscribed there while every
// instance publishes to the new master, and hear nothing until DeadAfter.
//
// So with a failover client, the bus also subscribes to a channel of its
// own, and with each heartbeat publishes an empty message there through
// the client's data path. PUBLISH answers how many subscribers of that
// node got it: 0 means this bus's subscription is not on the node its
// messages go to, and the subscription is replaced (through the same
// client, so on the node the data path now uses). This follows the
// client's own view of the master, needs no Sentinel address, and costs
// one PUBLISH per heartbeat. If Redis refuses the probe channel (an ACL
// that does not grant it), the bus stops probing rather than ask again at
// each subscription. If the probe finds three subscriptions in a row
// misplaced (something that routes PUBLISH and SUBSCRIBE to different
// servers), the bus stops probing too.

// probeMsg returns the probe to publish with this flush's heartbeats, or
// nil if there is none to send. Sender goroutine only.
func (b *Bus) probeMsg() *outMsg {
	if b.probe == nil || b.probeOff.Load() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Both under b.mu, so the confirmation is the subscription's psGen.
	if !b.probe.confirmed.Load() {
		return nil
	}
	return &outMsg{r: b.probe, probeGen: b.psGen}
}

// checkProbe replaces the subscription if the probe found it misplaced.
// Sender goroutine only.
func (b *Bus) checkProbe(o *outMsg) {
	if o.err != nil || o.receivers > 0 || o.probeGen <= b.lastMisplaced {
		return // placed right, unknown, or a subscription already replaced
	}
	b.mu.Lock()
	ps := b.ps
	current := ps != nil && b.psGen == o.probeGen
	b.mu.Unlock()
	if !current {
		return // ended or replaced meanwhile (it may have been dead): nothing learnt
	}
	if o.probeGen == b.lastMisplaced+1 {
		b.misplacedStreak++
	} else {
		b.misplacedStreak = 1
	}
	b.lastMisplaced = o.probeGen
	if b.misplacedStreak >= 3 {
		b.probeOff.Store(true)
		return
	}
	b.misplaced.Add(1)
	_ = ps.Close() // the receiver sees the error and subscribes again
}
