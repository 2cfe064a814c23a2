// Package redistest starts a real redis-server process for a test.
//
// [Start] runs the redis-server binary found on PATH on 127.0.0.1 and a free
// port, with persistence disabled and a per-test working directory, waits
// until it answers PING, and stops it when the test ends. There is no fake:
// the bugs that matter (timeouts, reconnects, pub/sub resubscription) live in
// the real server, so tests exercise the real server.
//
// Faults come from the process itself: [Server.Kill], [Server.Stop],
// [Server.Pause] and [Server.Resume] send signals, and [Server.Restart] brings
// an empty server back on the same port. For network faults between a client
// and the server, put a faultproxy.Proxy in front of [Server.Addr].
//
//	func TestBackend_Get(t *testing.T) {
//		srv := redistest.Start(t)
//		rdb := srv.Client(t)
//		require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
//		srv.Kill()
//		require.Error(t, rdb.Ping(t.Context()).Err())
//		srv.Restart() // same port, no data
//	}
//
// # Cluster and Sentinel
//
// [StartCluster] starts a Redis Cluster (default 3 masters, each with one
// replica, cluster-node-timeout 1500 ms) and [StartSentinel] a master with
// its replica watched by three Sentinels (`redis-server --sentinel`), both
// on free loopback ports and ready to use when they return (every node
// agrees on the slot map or the master, replicas are in sync). Their
// Client methods return go-redis's cluster and failover clients with
// go-redis's defaults. The faults a test drives:
//
//	c := redistest.StartCluster(t, nil)
//	m := c.MasterOfKey("user:1")
//	r := c.ReplicaOf(m)
//	c.MigrateSlot(c.Slot("user:1"), other) // the slot and its keys move
//	c.Failover(r)                         // graceful CLUSTER FAILOVER, waits until promoted
//	r.Kill()                              // or Pause: the nodes are Servers
//	c.WaitPromoted(m)                     // m, its replica now, takes over
//
//	s := redistest.StartSentinel(t, nil)
//	s.Failover()                 // SENTINEL FAILOVER, waits for +switch-master
//	s.WaitSwitch(s.KillMaster()) // SIGKILL, then wait until the Sentinels switch
//
// Every wait polls the servers' own state (CLUSTER NODES, CLUSTER INFO,
// ROLE, SENTINEL MASTER), bounded by [DefaultWaitTimeout]. A cluster starts
// in about 2.5 s (a new master reports cluster_state:ok no sooner than 2 s
// after it started); a Sentinel set in about 3 s (Sentinels announce
// themselves every 2 s); a killed master is replaced about NodeTimeout or
// DownAfter plus 1–2 s later.
//
// The server's log is kept in its temporary directory and written to the test
// log only if the test fails.
//
// NOTE: redis-server must be installed (apt-get install -y redis-server). A
// missing binary fails the test; it is never skipped. The package works on
// Unix systems only, because it controls the process with signals.
package redistest
