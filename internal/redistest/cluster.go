package redistest

// cluster.go: a local Redis Cluster of real redis-server processes, and the
// faults a test drives on it (kill, pause, graceful failover, slot moves).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// slotCount is the number of hash slots of a Redis Cluster.
const slotCount = 16384

// ClusterOptions configures [StartCluster]. A nil *ClusterOptions means the
// defaults.
type ClusterOptions struct {
	// Masters is the number of masters; the slots are split evenly between
	// them. Default: 3.
	Masters int
	// ReplicasPerMaster is the number of replicas of each master. Default:
	// 1; NoReplicas for none.
	ReplicasPerMaster int
	// NodeTimeout is cluster-node-timeout: how long a node may not answer
	// before the others mark it failing, which bounds how soon a replica
	// replaces a dead master (about NodeTimeout plus one to two seconds of
	// election). Default: 1500 ms, short for a test but long enough not to
	// fail over a node that is only starved of CPU on a busy machine.
	NodeTimeout time.Duration
	// Args are extra redis-server arguments for every node (see [Start] for
	// those it refuses).
	Args []string
	// WaitTimeout bounds each wait for the cluster to settle. Default:
	// [DefaultWaitTimeout].
	WaitTimeout time.Duration
}

// NoReplicas starts masters only, when given as ClusterOptions.ReplicasPerMaster.
const NoReplicas = -1

// Cluster is a Redis Cluster of redis-server processes on 127.0.0.1, owned
// by one test and stopped when it ends. Its nodes are [Server]s: kill,
// pause, resume or restart them with the Server methods ([Server.Kill],
// [Server.Pause], ...), then wait with [Cluster.WaitHealthy] if the test
// needs the cluster settled again.
//
// A Cluster is safe for concurrent use, but its methods report failures
// with the Fatalf method of the testing.TB given to [StartCluster], so call
// them from the goroutine running that test. The roles it reports
// ([Cluster.Masters], [Cluster.MasterOf], ...) are the nodes' view at the
// time of the call; call [Cluster.WaitHealthy] first for a settled one.
type Cluster struct {
	tb    testing.TB
	o     ClusterOptions
	nodes []*Server                 // in start order; immutable
	ids   map[*Server]string        // cluster node ids (kept across Restart); immutable
	byID  map[string]*Server        // immutable
	admin map[*Server]*redis.Client // immutable
}

// StartCluster starts a Redis Cluster (default: 3 masters, each with one
// replica) on free loopback ports, assigns the slots, waits until every
// node reports cluster_state:ok, agrees on who serves which slot and every
// replica is in sync, and stops every node in t.Cleanup. It takes about a
// second.
func StartCluster(t testing.TB, o *ClusterOptions) *Cluster {
	t.Helper()
	var opts ClusterOptions
	if o != nil {
		opts = *o
	}
	if opts.Masters == 0 {
		opts.Masters = 3
	}
	switch opts.ReplicasPerMaster {
	case 0:
		opts.ReplicasPerMaster = 1
	case NoReplicas:
		opts.ReplicasPerMaster = 0
	}
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = 1500 * time.Millisecond
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	if opts.Masters < 1 || opts.Masters > slotCount || opts.ReplicasPerMaster < 0 || opts.NodeTimeout < 0 {
		t.Fatalf("redistest: StartCluster: invalid options %+v", opts)
	}
	args := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
		// A replica may replace its master however long it was cut off:
		// a test decides when a failover happens, not the data's age.
		"--cluster-replica-validity-factor", "0",
		// No 5 s wait for more replicas before a full sync.
		"--repl-diskless-sync-delay", "0",
	}, opts.Args...)
	c := &Cluster{tb: t, o: opts, ids: map[*Server]string{}, byID: map[string]*Server{}, admin: map[*Server]*redis.Client{}}
	total := opts.Masters * (1 + opts.ReplicasPerMaster)
	for range total {
		s := start(t, serverConfig{args: args, clusterBus: true})
		c.nodes = append(c.nodes, s)
		c.admin[s] = adminClient(t, s)
		id, err := do(c.admin[s], "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on %s: %v", s.Addr(), err)
		}
		c.ids[s], c.byID[id] = id, s
	}
	masters := c.nodes[:opts.Masters]
	for i, m := range masters {
		first, last := i*slotCount/opts.Masters, (i+1)*slotCount/opts.Masters-1
		// Distinct epochs from the start: no collision to resolve.
		c.must(m, "CLUSTER", "SET-CONFIG-EPOCH", i+1)
		c.must(m, "CLUSTER", "ADDSLOTSRANGE", first, last)
	}
	for _, s := range c.nodes[1:] {
		c.must(c.nodes[0], "CLUSTER", "MEET", host, s.Port(), s.busPort)
	}
	// CLUSTER REPLICATE needs the replica to know its master.
	c.wait("every node knows every other", func() error {
		for _, s := range c.nodes {
			v, err := c.view(s)
			if err != nil {
				return err
			}
			for _, n := range c.nodes {
				e, ok := v[c.ids[n]]
				if !ok || e.flags["handshake"] || e.flags["noaddr"] {
					return fmt.Errorf("%s does not know %s yet", s.Addr(), n.Addr())
				}
			}
		}
		return nil
	})
	for i, r := range c.nodes[opts.Masters:] {
		c.must(r, "CLUSTER", "REPLICATE", c.ids[masters[i%opts.Masters]])
	}
	c.WaitHealthy()
	return c
}

// must runs an administrative command on s and fails the test on an error.
func (c *Cluster) must(s *Server, args ...any) {
	c.tb.Helper()
	if err := do(c.admin[s], args...).Err(); err != nil {
		c.tb.Fatalf("redistest: %v on %s: %v", args, s.Addr(), err)
	}
}

// wait polls cond until it returns nil or WaitTimeout passes.
func (c *Cluster) wait(what string, cond func() error) {
	c.tb.Helper()
	waitUntil(c.tb, c.o.WaitTimeout, "cluster: "+what, cond, c.describe)
}

// Nodes returns every node, masters and replicas, in the order they were
// started (the first Masters ones were the masters then).
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// Addrs returns the addresses of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// ID returns node's cluster node id.
func (c *Cluster) ID(node *Server) string { return c.ids[node] }

// ClientOptions returns new go-redis cluster options for the cluster: every
// node's address, and ContextTimeoutEnabled (tiercache bounds every call by
// its own context); everything else is go-redis's default. The caller may
// change them before passing them to redis.NewClusterClient.
func (c *Cluster) ClientOptions() *redis.ClusterOptions {
	return &redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true}
}

// Client returns a new go-redis cluster client built from
// [Cluster.ClientOptions], closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(c.ClientOptions())
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Slot returns the hash slot of key, as the cluster computes it.
func (c *Cluster) Slot(key string) int {
	c.tb.Helper()
	for _, s := range c.nodes {
		if !s.live() {
			continue
		}
		if n, err := do(c.admin[s], "CLUSTER", "KEYSLOT", key).Int(); err == nil {
			return n
		}
	}
	c.tb.Fatalf("redistest: CLUSTER KEYSLOT %q: no node answered", key)
	return 0
}

// Masters returns the nodes that serve slots, in start order.
func (c *Cluster) Masters() []*Server {
	c.tb.Helper()
	v := c.anyView()
	var out []*Server
	for _, s := range c.nodes {
		if e, ok := v[c.ids[s]]; ok && e.flags["master"] && !e.failing() && len(e.slots) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// MasterOf returns the master serving slot.
func (c *Cluster) MasterOf(slot int) *Server {
	c.tb.Helper()
	for _, e := range c.anyView() {
		if e.flags["master"] && !e.failing() && e.serves(slot) {
			return c.byID[e.id]
		}
	}
	c.tb.Fatalf("redistest: no master serves slot %d\n%s", slot, c.describe())
	return nil
}

// MasterOfKey returns the master serving key's slot.
func (c *Cluster) MasterOfKey(key string) *Server {
	c.tb.Helper()
	return c.MasterOf(c.Slot(key))
}

// ReplicaOf returns a live replica of master, or nil if it has none.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	c.tb.Helper()
	v := c.anyView()
	for _, s := range c.nodes {
		if e, ok := v[c.ids[s]]; ok && e.master == c.ids[master] && !e.failing() && s.live() {
			return s
		}
	}
	return nil
}

// Failover makes replica its master's master with a graceful CLUSTER
// FAILOVER (the master stops writes until the replica has caught up, so no
// acknowledged write is lost) and waits until every live node agrees and
// the cluster is healthy again.
func (c *Cluster) Failover(replica *Server) {
	c.tb.Helper()
	c.must(replica, "CLUSTER", "FAILOVER")
	c.wait("replica "+replica.Addr()+" promoted", func() error { return c.promoted(replica) })
	c.WaitHealthy()
}

// WaitPromoted waits until replica is a master in every live node's view
// (after its master was killed or paused, for example), then until the
// cluster is healthy.
func (c *Cluster) WaitPromoted(replica *Server) {
	c.tb.Helper()
	c.wait("replica "+replica.Addr()+" promoted", func() error { return c.promoted(replica) })
	c.WaitHealthy()
}

// promoted returns nil once every live node sees s as a master with slots.
func (c *Cluster) promoted(s *Server) error {
	return c.forEachLive(func(n *Server, v clusterView) error {
		e := v[c.ids[s]]
		if e == nil || !e.flags["master"] || len(e.slots) == 0 {
			return fmt.Errorf("%s does not see %s as a master with slots yet", n.Addr(), s.Addr())
		}
		return nil
	})
}

// MigrateSlot moves slot, with its keys, to the master to, the way
// redis-cli --cluster reshard does (SETSLOT IMPORTING and MIGRATING,
// MIGRATE of each key, SETSLOT NODE), and waits until every live node
// agrees that to serves it.
func (c *Cluster) MigrateSlot(slot int, to *Server) {
	c.tb.Helper()
	from := c.MasterOf(slot)
	if from == to {
		return
	}
	c.must(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.ids[from])
	c.must(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[to])
	for {
		keys, err := do(c.admin[from], "CLUSTER", "GETKEYSINSLOT", slot, 100).StringSlice()
		if err != nil {
			c.tb.Fatalf("redistest: CLUSTER GETKEYSINSLOT %d on %s: %v", slot, from.Addr(), err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, to.Port(), "", 0, adminTimeout.Milliseconds()}
		if to.password != "" {
			args = append(args, "AUTH", to.password)
		}
		args = append(args, "KEYS")
		for _, k := range keys {
			args = append(args, k)
		}
		c.must(from, args...)
	}
	// The importing node first: it bumps its epoch, so its claim wins.
	c.must(to, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to])
	c.must(from, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to])
	for _, m := range c.Masters() {
		if m != to && m != from {
			_ = do(c.admin[m], "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to]).Err() // gossip would tell it anyway
		}
	}
	c.wait(fmt.Sprintf("slot %d served by %s", slot, to.Addr()), func() error {
		return c.forEachLive(func(n *Server, v clusterView) error {
			if e := v[c.ids[to]]; e == nil || !e.serves(slot) {
				return fmt.Errorf("%s does not see slot %d on %s yet", n.Addr(), slot, to.Addr())
			}
			return nil
		})
	})
	c.WaitHealthy()
}

// WaitHealthy waits until every live node (running and not paused) reports
// cluster_state:ok, sees every other live node as reachable, agrees with
// the others on which node serves each slot and whose replica each replica
// is, every slot is served by a live node, and every replica of a live
// master has its replication link up. Dead nodes are ignored: after a
// master is killed, WaitHealthy returns once its replica has replaced it.
func (c *Cluster) WaitHealthy() {
	c.tb.Helper()
	c.wait("healthy", c.healthy)
}

// healthy returns nil if the cluster is healthy (see WaitHealthy), or what
// is not.
func (c *Cluster) healthy() error {
	var ref string // the slot map and roles, as the first live node sees them
	var refNode *Server
	return c.forEachLive(func(n *Server, v clusterView) error {
		state, err := clusterInfoField(c.admin[n], "cluster_state")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if state != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", n.Addr(), state)
		}
		var owners [slotCount]string
		for _, s := range c.nodes {
			if !s.live() {
				continue
			}
			e := v[c.ids[s]]
			if e == nil || e.failing() || e.flags["handshake"] || e.flags["noaddr"] {
				return fmt.Errorf("%s does not see %s as healthy", n.Addr(), s.Addr())
			}
			if !e.flags["myself"] && !e.connected {
				return fmt.Errorf("%s has no link to %s", n.Addr(), s.Addr())
			}
		}
		for _, e := range v {
			if !e.flags["master"] {
				continue
			}
			for _, r := range e.slots {
				for i := r[0]; i <= r[1]; i++ {
					owners[i] = e.id
				}
			}
		}
		for i, id := range owners {
			if id == "" {
				return fmt.Errorf("%s: slot %d not served", n.Addr(), i)
			}
			if s := c.byID[id]; s == nil || !s.live() {
				return fmt.Errorf("%s: slot %d served by a node that is down", n.Addr(), i)
			}
		}
		// Slot ranges and roles of the live nodes, as one comparable string.
		var b strings.Builder
		for _, s := range c.nodes {
			if !s.live() {
				continue
			}
			e := v[c.ids[s]]
			fmt.Fprintf(&b, "%s %v %s %v\n", e.id, e.flags["master"], e.master, e.slots)
		}
		if ref == "" {
			ref, refNode = b.String(), n
		} else if b.String() != ref {
			return fmt.Errorf("%s and %s disagree on the slot map", n.Addr(), refNode.Addr())
		}
		if e := v[c.ids[n]]; e.flags["slave"] {
			if m := c.byID[e.master]; m != nil && m.live() {
				if err := replicaLinkUp(c.admin[n]); err != nil {
					return fmt.Errorf("%s: %w", n.Addr(), err)
				}
			}
		}
		return nil
	})
}

// forEachLive calls fn with each live node and its view of the cluster,
// and returns the first error.
func (c *Cluster) forEachLive(fn func(n *Server, v clusterView) error) error {
	for _, n := range c.nodes {
		if !n.live() {
			continue
		}
		v, err := c.view(n)
		if err != nil {
			return err
		}
		if err := fn(n, v); err != nil {
			return err
		}
	}
	return nil
}

// anyView returns the view of the first live node that answers.
func (c *Cluster) anyView() clusterView {
	c.tb.Helper()
	return firstAnswer(c.tb, c.nodes, "no cluster node answered CLUSTER NODES", c.view)
}

// describe returns every live node's CLUSTER NODES, for a failure message.
func (c *Cluster) describe() string {
	var b strings.Builder
	for _, s := range c.nodes {
		if !s.live() {
			fmt.Fprintf(&b, "%s (%s): down\n", s.Addr(), c.ids[s])
			continue
		}
		out, err := do(c.admin[s], "CLUSTER", "NODES").Text()
		if err != nil {
			fmt.Fprintf(&b, "%s: CLUSTER NODES: %v\n", s.Addr(), err)
			continue
		}
		fmt.Fprintf(&b, "%s sees:\n%s", s.Addr(), out)
	}
	return b.String()
}

// view returns s's CLUSTER NODES, by node id.
func (c *Cluster) view(s *Server) (clusterView, error) {
	out, err := do(c.admin[s], "CLUSTER", "NODES").Text()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", s.Addr(), err)
	}
	return parseClusterNodes(out)
}

// clusterView is one node's CLUSTER NODES, by node id.
type clusterView map[string]*clusterEntry

// clusterEntry is one line of CLUSTER NODES.
type clusterEntry struct {
	id        string
	addr      string // host:port
	flags     map[string]bool
	master    string // the master's id for a replica, "-" otherwise
	connected bool   // link-state
	slots     [][2]int
}

// failing reports whether the node is flagged as failing (fail or fail?).
func (e *clusterEntry) failing() bool { return e.flags["fail"] || e.flags["fail?"] }

// serves reports whether e's slot ranges include slot.
func (e *clusterEntry) serves(slot int) bool {
	for _, r := range e.slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

// parseClusterNodes parses the reply of CLUSTER NODES.
func parseClusterNodes(out string) (clusterView, error) {
	v := clusterView{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: too short", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		e := &clusterEntry{id: f[0], addr: addr, flags: map[string]bool{}, master: f[3], connected: f[7] == "connected"}
		for fl := range strings.SplitSeq(f[2], ",") {
			e.flags[fl] = true
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being imported or migrated
			}
			lo, hi, isRange := strings.Cut(s, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER NODES slot %q: %w", s, err)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("CLUSTER NODES slot %q: %w", s, err)
				}
			}
			e.slots = append(e.slots, [2]int{a, b})
		}
		v[e.id] = e
	}
	return v, nil
}

// clusterInfoField returns one field of CLUSTER INFO.
func clusterInfoField(c *redis.Client, field string) (string, error) {
	out, err := do(c, "CLUSTER", "INFO").Text()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(out, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in CLUSTER INFO", field)
}
