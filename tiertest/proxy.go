package tiertest

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/faultproxy"
)

// Proxy is a TCP proxy that forwards the connections made to its address
// to a target (usually a [Server]'s) and injects network faults on demand:
// delay, a cut, a black hole. Point the client under test at [Proxy.Addr].
// It is closed when the test ends.
//
// A Proxy is safe for concurrent use.
type Proxy struct{ p *faultproxy.Proxy }

// NewProxy starts a proxy for t on 127.0.0.1 and a free port that forwards
// every connection to target.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return &Proxy{p: faultproxy.New(t, target)}
}

// Addr returns the address clients should dial, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.p.Addr() }

// Delay delays every chunk of bytes by d in both directions (0: none),
// keeping each connection's byte order: a request and its reply take at
// least 2·d.
func (p *Proxy) Delay(d time.Duration) { p.p.SetLatency(d) }

// Jitter adds a random extra delay between 0 and upTo to every chunk, on
// top of [Proxy.Delay].
func (p *Proxy) Jitter(upTo time.Duration) { p.p.SetJitter(upTo) }

// Cut resets every open connection, and every new one as soon as it is
// accepted, like a server that went away: clients see "connection reset"
// at once. [Proxy.Heal] ends it.
func (p *Proxy) Cut() { p.p.Cut() }

// Blackhole keeps every connection open, and accepts new ones, but drops
// every byte in both directions, like a link that died silently: clients
// see only timeouts. [Proxy.Heal] ends it.
func (p *Proxy) Blackhole() { p.p.Blackhole() }

// Heal forwards new connections normally again. The connections a
// [Proxy.Cut] or [Proxy.Blackhole] touched stay broken (closed when
// healed from a black hole), so clients reconnect.
func (p *Proxy) Heal() { p.p.Heal() }

// Conns returns how many client connections are open through the proxy.
func (p *Proxy) Conns() int { return p.p.Conns() }
