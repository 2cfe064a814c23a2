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
// The server's log is kept in its temporary directory and written to the test
// log only if the test fails.
//
// NOTE: redis-server must be installed (apt-get install -y redis-server). A
// missing binary fails the test; it is never skipped. The package works on
// Unix systems only, because it controls the process with signals.
package redistest
