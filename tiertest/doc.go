// Package tiertest is a kit for testing code that uses tiercache against
// the real thing: a real redis-server per test, a TCP proxy that injects
// network faults between a client and that server, and a fake clock for
// tier.Options.Clock.
//
//	func TestProfiles_Cached(t *testing.T) {
//		srv := tiertest.Redis(t)          // redis-server on a free loopback port, stopped at the end
//		proxy := tiertest.NewProxy(t, srv.Addr())
//		o := srv.Options()
//		o.Addr = proxy.Addr()             // the code under test talks through the proxy
//		rdb := redis.NewClient(o)
//		defer rdb.Close()
//		clock := tiertest.NewClock(time.Now())
//		cache := tier.Must(&tier.Options[Profile]{
//			Namespace: "profiles", L2: goredis.Must(rdb, nil), Clock: clock,
//		})
//		defer cache.Close()
//
//		// ... exercise the code ...
//		proxy.Blackhole()                 // Redis stops answering: the cache falls back
//		clock.Advance(time.Hour)          // past the TTL, without sleeping
//		srv.Kill()                        // or Pause, Stop, Restart
//	}
//
// [Redis] skips the test, with a message saying how to install it, when
// redis-server is not on PATH. A skipped test has tested nothing: make sure
// your CI installs redis-server (apt-get install -y redis-server), or look
// for SKIP in `go test -v` output. Every other failure (the server does not
// start, a port cannot be found) fails the test.
//
// The servers, proxies and their goroutines are stopped in t.Cleanup, so
// tests may use goleak. The kit is the one tiercache's own tests use (its
// implementation lives in tiercache's internal packages).
package tiertest
