// Package faultproxy is a TCP proxy for injecting network faults between a
// client and a real server in tests.
//
// [New] listens on a free loopback port and forwards every connection to a
// target address, usually a redistest.Server. Point the client at
// [Proxy.Addr] and change the link while the test runs:
//
//   - [Proxy.SetLatency] and [Proxy.SetJitter] delay every chunk of bytes in
//     both directions, keeping the byte order of each connection.
//   - [Proxy.Cut] resets every connection and every new one, like a server
//     that went away.
//   - [Proxy.Blackhole] keeps connections open but drops every byte, like a
//     link that died silently: the client sees timeouts, never a reset.
//   - [Proxy.Heal] forwards new connections normally again.
//
// For example:
//
//	srv := redistest.Start(t)
//	p := faultproxy.New(t, srv.Addr())
//	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 300 * time.Millisecond})
//	p.Blackhole()
//	err := rdb.Ping(t.Context()).Err() // i/o timeout
//	p.Heal()
//
// A Proxy is closed in t.Cleanup; [Proxy.Close] returns only after all of its
// goroutines have exited, so tests can check for leaks with goleak.
package faultproxy
