package redistest

// sentinel.go: a local Sentinel set (a master, its replicas and the
// Sentinels watching them) of real redis-server processes, and the
// failovers a test drives on it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions configures [StartSentinel]. A nil *SentinelOptions means
// the defaults.
type SentinelOptions struct {
	// MasterName is the name the Sentinels monitor the master under.
	// Default: "mymaster".
	MasterName string
	// Replicas is the number of replicas of the master. Default: 1.
	Replicas int
	// Sentinels is the number of Sentinels; the quorum is a majority of
	// them. Default: 3.
	Sentinels int
	// DownAfter is Sentinel's down-after-milliseconds: how long the master
	// may not answer before a Sentinel considers it down. A killed master
	// is replaced about DownAfter plus one to three seconds later.
	// Default: 1 s.
	DownAfter time.Duration
	// FailoverTimeout is Sentinel's failover-timeout (Sentinel does not
	// start a failover of the same master again within twice this).
	// Default: 3 s.
	FailoverTimeout time.Duration
	// Args are extra redis-server arguments for the master and replicas
	// (not the Sentinels).
	Args []string
	// WaitTimeout bounds each wait for the set to settle. Default:
	// [DefaultWaitTimeout].
	WaitTimeout time.Duration
}

// Sentinel is a Sentinel-managed master with its replicas and Sentinels,
// all redis-server processes on 127.0.0.1 owned by one test and stopped
// when it ends. The data nodes and the Sentinels are [Server]s: kill, pause
// or restart them with the Server methods.
//
// A Sentinel is safe for concurrent use, but its methods report failures
// with the Fatalf method of the testing.TB given to [StartSentinel], so call
// them from the goroutine running that test.
type Sentinel struct {
	tb        testing.TB
	o         SentinelOptions
	servers   []*Server // data nodes; servers[0] was the first master; immutable
	sentinels []*Server // immutable
	admin     map[*Server]*redis.Client
}

// StartSentinel starts a master, its replicas (default 1) and Sentinels
// (default 3) watching it, on free loopback ports; waits until every
// replica is in sync and every Sentinel knows the replicas and the other
// Sentinels (so that it can vote on a failover); and stops them all in
// t.Cleanup. It takes about two seconds, most of it Sentinels discovering
// each other (they announce themselves every 2 s).
func StartSentinel(t testing.TB, o *SentinelOptions) *Sentinel {
	t.Helper()
	var opts SentinelOptions
	if o != nil {
		opts = *o
	}
	if opts.MasterName == "" {
		opts.MasterName = "mymaster"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Sentinels == 0 {
		opts.Sentinels = 3
	}
	if opts.DownAfter == 0 {
		opts.DownAfter = time.Second
	}
	if opts.FailoverTimeout == 0 {
		opts.FailoverTimeout = 3 * time.Second
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	if opts.Replicas < 0 || opts.Sentinels < 1 || opts.DownAfter < 0 || opts.FailoverTimeout < 0 ||
		strings.ContainsAny(opts.MasterName, " \t\r\n") {
		t.Fatalf("redistest: StartSentinel: invalid options %+v", opts)
	}
	s := &Sentinel{tb: t, o: opts, admin: map[*Server]*redis.Client{}}
	args := append([]string{"--repl-diskless-sync-delay", "0"}, opts.Args...)
	master := start(t, serverConfig{args: args})
	s.add(master, &s.servers)
	for range opts.Replicas {
		r := start(t, serverConfig{args: append(slices.Clone(args), "--replicaof", host, strconv.Itoa(master.Port()))})
		s.add(r, &s.servers)
	}
	// A Sentinel learns the replicas from the master's INFO, so they must
	// be attached before the Sentinels start.
	s.wait("replicas in sync", func() error {
		for _, r := range s.servers[1:] {
			if err := replicaLinkUp(s.admin[r]); err != nil {
				return fmt.Errorf("%s: %w", r.Addr(), err)
			}
		}
		return nil
	})
	name := opts.MasterName
	conf := fmt.Sprintf("sentinel monitor %s %s %d %d\n", name, host, master.Port(), opts.Sentinels/2+1) +
		fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", name, opts.DownAfter.Milliseconds()) +
		fmt.Sprintf("sentinel failover-timeout %s %d\n", name, opts.FailoverTimeout.Milliseconds()) +
		fmt.Sprintf("sentinel parallel-syncs %s 1\n", name)
	for range opts.Sentinels {
		s.add(start(t, serverConfig{conf: conf, sentinel: true}), &s.sentinels)
	}
	s.WaitHealthy()
	return s
}

// add records srv in list with an admin client.
func (s *Sentinel) add(srv *Server, list *[]*Server) {
	*list = append(*list, srv)
	s.admin[srv] = adminClient(s.tb, srv)
}

// wait polls cond until it returns nil or WaitTimeout passes.
func (s *Sentinel) wait(what string, cond func() error) {
	s.tb.Helper()
	waitUntil(s.tb, s.o.WaitTimeout, "sentinel: "+what, cond, s.describe)
}

// MasterName returns the name the Sentinels monitor the master under.
func (s *Sentinel) MasterName() string { return s.o.MasterName }

// SentinelAddrs returns the Sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, srv := range s.sentinels {
		addrs[i] = srv.Addr()
	}
	return addrs
}

// Sentinels returns the Sentinel processes.
func (s *Sentinel) Sentinels() []*Server { return slices.Clone(s.sentinels) }

// Servers returns the data nodes (master and replicas), in start order: the
// first was the master then.
func (s *Sentinel) Servers() []*Server { return slices.Clone(s.servers) }

// FailoverOptions returns new go-redis failover options for the set: the
// master name, the Sentinels' addresses and ContextTimeoutEnabled
// (tiercache bounds every call by its own context); everything else is
// go-redis's default. The caller may change them before passing them to
// redis.NewFailoverClient.
func (s *Sentinel) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName:            s.o.MasterName,
		SentinelAddrs:         s.SentinelAddrs(),
		ContextTimeoutEnabled: true,
	}
}

// Client returns a new go-redis failover client (redis.NewFailoverClient)
// built from [Sentinel.FailoverOptions], closed in t.Cleanup.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewFailoverClient(s.FailoverOptions())
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Master returns the master as the Sentinels name it (the first live one
// that answers).
func (s *Sentinel) Master() *Server {
	s.tb.Helper()
	return firstAnswer(s.tb, s.sentinels, "no Sentinel named a master", s.masterPer)
}

// masterPer returns the master as sen names it.
func (s *Sentinel) masterPer(sen *Server) (*Server, error) {
	hp, err := do(s.admin[sen], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.o.MasterName).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sen.Addr(), err)
	}
	if len(hp) != 2 {
		return nil, fmt.Errorf("%s: GET-MASTER-ADDR-BY-NAME returned %q", sen.Addr(), hp)
	}
	addr := net.JoinHostPort(hp[0], hp[1])
	for _, srv := range s.servers {
		if srv.Addr() == addr {
			return srv, nil
		}
	}
	return nil, fmt.Errorf("%s names %s, not one of ours", sen.Addr(), addr)
}

// KillMaster sends SIGKILL to the master and returns it, without waiting
// for the failover (see [Sentinel.WaitSwitch]).
func (s *Sentinel) KillMaster() *Server {
	s.tb.Helper()
	m := s.Master()
	m.Kill()
	return m
}

// WaitSwitch waits until every live Sentinel names the same master, not
// old, and that server answers ROLE as a master; it returns the new master.
func (s *Sentinel) WaitSwitch(old *Server) *Server {
	s.tb.Helper()
	var m *Server
	s.wait("a master other than "+old.Addr(), func() error {
		var err error
		m, err = s.agreedMaster()
		if err == nil && m == old {
			err = fmt.Errorf("the Sentinels still name %s", old.Addr())
		}
		return err
	})
	return m
}

// Failover runs SENTINEL FAILOVER (a graceful failover, which needs no
// agreement between Sentinels), waits for the Sentinel's +switch-master
// and until every live Sentinel names the new master and it answers ROLE
// as a master, and returns the new master.
//
// NOTE: the old master becomes a replica of the new one only when a
// Sentinel reconfigures it, a little later; call [Sentinel.WaitHealthy]
// to wait for that too.
func (s *Sentinel) Failover() *Server {
	s.tb.Helper()
	old := s.Master()
	var sen *Server
	for _, x := range s.sentinels {
		if x.live() {
			sen = x
			break
		}
	}
	if sen == nil {
		s.tb.Fatalf("redistest: Failover: no live Sentinel")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.WaitTimeout)
	defer cancel()
	ps := s.admin[sen].Subscribe(ctx, "+switch-master")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		s.tb.Fatalf("redistest: subscribe to +switch-master on %s: %v", sen.Addr(), err)
	}
	// A Sentinel refuses while a replica is not yet known as healthy (just
	// after another failover, for example); retry.
	s.wait("SENTINEL FAILOVER accepted", func() error {
		return do(s.admin[sen], "SENTINEL", "FAILOVER", s.o.MasterName).Err()
	})
	for {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			s.tb.Fatalf("redistest: no +switch-master from %s: %v\n%s", sen.Addr(), err, s.describe())
		}
		if strings.HasPrefix(msg.Payload, s.o.MasterName+" ") {
			break
		}
	}
	return s.WaitSwitch(old)
}

// WaitHealthy waits until every live Sentinel names the same master, which
// answers ROLE as a master; every other live data node is its replica with
// the link up; and every live Sentinel sees the master up, knows each live
// replica as up and knows every other live Sentinel.
//
// NOTE: after a failover this takes about 20 s: a Sentinel turns the old
// master (demoted or restarted) into a replica only when it next reads its
// INFO (every 10 s), and sees the replica in sync at the read after that.
// Start another Sentinel set rather than wait, where a test can.
func (s *Sentinel) WaitHealthy() {
	s.tb.Helper()
	s.wait("healthy", s.healthy)
}

// healthy returns nil if the set is healthy (see WaitHealthy), or what is
// not.
func (s *Sentinel) healthy() error {
	m, err := s.agreedMaster()
	if err != nil {
		return err
	}
	var replicas []*Server
	for _, r := range s.servers {
		if r == m || !r.live() {
			continue
		}
		replicas = append(replicas, r)
		if err := replicaLinkUp(s.admin[r]); err != nil {
			return fmt.Errorf("%s: %w", r.Addr(), err)
		}
		mh, _ := infoField(s.admin[r], "replication", "master_port")
		if mh != strconv.Itoa(m.Port()) {
			return fmt.Errorf("%s replicates port %s, not the master %s", r.Addr(), mh, m.Addr())
		}
	}
	others := -1
	for _, sen := range s.sentinels {
		if sen.live() {
			others++
		}
	}
	for _, sen := range s.sentinels {
		if !sen.live() {
			continue
		}
		mi, err := doMap(s.admin[sen], "SENTINEL", "MASTER", s.o.MasterName)
		if err != nil {
			return fmt.Errorf("%s: SENTINEL MASTER: %w", sen.Addr(), err)
		}
		if mi["flags"] != "master" {
			return fmt.Errorf("%s: master flags %q", sen.Addr(), mi["flags"])
		}
		if n, _ := strconv.Atoi(mi["num-other-sentinels"]); n < others {
			return fmt.Errorf("%s knows %d other Sentinels, want %d", sen.Addr(), n, others)
		}
		known, err := do(s.admin[sen], "SENTINEL", "REPLICAS", s.o.MasterName).Slice()
		if err != nil {
			return fmt.Errorf("%s: SENTINEL REPLICAS: %w", sen.Addr(), err)
		}
		up := map[string]bool{}
		for _, k := range known {
			f := pairs(k)
			if f["flags"] == "slave" && f["master-link-status"] == "ok" {
				up[net.JoinHostPort(f["ip"], f["port"])] = true
			}
		}
		for _, r := range replicas {
			if !up[r.Addr()] {
				return fmt.Errorf("%s does not know replica %s as up", sen.Addr(), r.Addr())
			}
		}
	}
	return nil
}

// agreedMaster returns the master every live Sentinel names, if they agree
// and it answers ROLE as a master.
func (s *Sentinel) agreedMaster() (*Server, error) {
	var m *Server
	for _, sen := range s.sentinels {
		if !sen.live() {
			continue
		}
		x, err := s.masterPer(sen)
		if err != nil {
			return nil, err
		}
		if m != nil && x != m {
			return nil, fmt.Errorf("the Sentinels name %s and %s", m.Addr(), x.Addr())
		}
		m = x
	}
	if m == nil {
		return nil, errors.New("no live Sentinel")
	}
	if !m.live() {
		return nil, fmt.Errorf("the master %s is down", m.Addr())
	}
	r, err := role(s.admin[m])
	if err != nil {
		return nil, fmt.Errorf("ROLE on %s: %w", m.Addr(), err)
	}
	if r != "master" {
		return nil, fmt.Errorf("%s is named master but its role is %s", m.Addr(), r)
	}
	return m, nil
}

// describe returns what each live Sentinel says of the master and each
// data node's role, for a failure message.
func (s *Sentinel) describe() string {
	var b strings.Builder
	for _, srv := range s.servers {
		if !srv.live() {
			fmt.Fprintf(&b, "data node %s: down\n", srv.Addr())
			continue
		}
		r, err := role(s.admin[srv])
		fmt.Fprintf(&b, "data node %s: role %s %v\n", srv.Addr(), r, err)
	}
	for _, sen := range s.sentinels {
		if !sen.live() {
			fmt.Fprintf(&b, "sentinel %s: down\n", sen.Addr())
			continue
		}
		mi, err := doMap(s.admin[sen], "SENTINEL", "MASTER", s.o.MasterName)
		fmt.Fprintf(&b, "sentinel %s: %v %v\n", sen.Addr(), mi, err)
	}
	return b.String()
}

// doMap runs a command whose reply is a flat list of field, value, ...
func doMap(c *redis.Client, args ...any) (map[string]string, error) {
	v, err := do(c, args...).Slice()
	if err != nil {
		return nil, err
	}
	return pairs(v), nil
}

// pairs turns a RESP2 flat list of field, value, ... into a map.
func pairs(v any) map[string]string {
	m := map[string]string{}
	l, _ := v.([]any)
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		x, _ := l[i+1].(string)
		m[k] = x
	}
	return m
}
