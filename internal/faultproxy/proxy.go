package faultproxy

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mode is what the proxy does with connections.
type mode int

const (
	// modeForward forwards bytes, after the configured delay.
	modeForward mode = iota
	// modeCut resets new connections as soon as they are accepted.
	modeCut
	// modeBlackhole accepts new connections and drops all their bytes.
	modeBlackhole
)

// acceptBackoff is the pause after a temporary Accept error, such as running
// out of file descriptors, as in net/http.
const acceptBackoff = 5 * time.Millisecond

// Proxy forwards TCP connections from a loopback port to a target address and
// injects faults on demand. It is created by [New].
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	target string       // immutable
	ln     net.Listener // immutable

	latency atomic.Int64 // time.Duration added to every chunk
	jitter  atomic.Int64 // time.Duration, maximum random extra per chunk

	mu     sync.Mutex // guards the fields below
	mode   mode
	links  map[*link]struct{} // open client connections
	closed bool

	wg    sync.WaitGroup // counts every goroutine the proxy starts
	close func() error   // sync.OnceValue around shutdown
}

// New starts a proxy that listens on 127.0.0.1 and a free port and forwards
// each connection to target. The proxy is closed in t.Cleanup.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{
		target: target,
		ln:     ln,
		links:  make(map[*link]struct{}),
	}
	p.close = sync.OnceValue(p.shutdown)
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return p
}

// Addr returns the address clients should dial, "127.0.0.1:PORT".
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// SetLatency delays every chunk of bytes by d before forwarding it, in both
// directions. Zero means no delay. Chunks read before the call keep the delay
// they were given.
//
// NOTE: a chunk is what one read returned, so a request and its reply are
// each delayed once: a round trip takes at least 2*d.
func (p *Proxy) SetLatency(d time.Duration) {
	p.latency.Store(int64(max(d, 0)))
}

// SetJitter adds a random extra delay between 0 and maxJitter to every chunk,
// on top of [Proxy.SetLatency]. Zero means none. Bytes of one connection are
// never reordered: a chunk whose delay ends early waits for the one before it.
func (p *Proxy) SetJitter(maxJitter time.Duration) {
	p.jitter.Store(int64(max(maxJitter, 0)))
}

// Cut resets every open connection and resets new ones as soon as they are
// accepted, until [Proxy.Heal]. Clients see "connection reset by peer" or
// EOF.
//
// NOTE: the proxy keeps listening so its address stays valid, which means a
// client's dial succeeds and its first read or write fails.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.mode = modeCut
	links := p.takeLinksLocked(func(*link) bool { return true })
	p.mu.Unlock()
	for _, l := range links {
		l.close(true)
	}
}

// Blackhole keeps every connection open but silently drops all bytes in both
// directions, and does the same to new connections. Clients see no reset and
// no EOF, only their own timeouts, as with a link that died silently.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = modeBlackhole
	for l := range p.links {
		l.blackholed.Store(true)
	}
}

// Heal forwards new connections normally again. Connections closed by
// [Proxy.Cut] stay closed. Connections that were blackholed are closed,
// because the bytes dropped in between have broken their protocol stream.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.mode = modeForward
	links := p.takeLinksLocked(func(l *link) bool { return l.blackholed.Load() })
	p.mu.Unlock()
	for _, l := range links {
		l.close(false)
	}
}

// Conns returns the number of client connections currently open through the
// proxy, blackholed ones included.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops listening, closes every connection and returns after all of
// the proxy's goroutines have exited. It is idempotent: later calls return the
// result of the first.
func (p *Proxy) Close() error {
	return p.close()
}

// shutdown does the work of Close, once.
func (p *Proxy) shutdown() error {
	p.mu.Lock()
	p.closed = true
	links := p.takeLinksLocked(func(*link) bool { return true })
	p.mu.Unlock()

	var err error
	if cerr := p.ln.Close(); cerr != nil {
		err = errors.Join(errors.New("faultproxy: close listener"), cerr)
	}
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	return err
}

// takeLinksLocked removes from p.links the links for which match returns
// true and returns them, so that the caller can close them without holding
// p.mu, which link.close takes. p.mu must be held.
func (p *Proxy) takeLinksLocked(match func(*link) bool) []*link {
	var out []*link
	for l := range p.links {
		if match(l) {
			out = append(out, l)
			delete(p.links, l)
		}
	}
	return out
}

// acceptLoop accepts connections until the listener is closed.
func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure such as EMFILE; the loop ends when
			// Close closes the listener.
			time.Sleep(acceptBackoff)
			continue
		}
		p.admit(c)
	}
}

// admit handles a new client connection according to the current mode.
func (p *Proxy) admit(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == modeCut {
		reset(c)
		return
	}
	l := newLink(p, c)
	p.links[l] = struct{}{}
	p.wg.Add(1)
	if p.mode == modeBlackhole {
		l.blackholed.Store(true)
		go l.swallow()
		return
	}
	go l.run()
}

// forget removes l from the open links, if it is still there.
func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}

// delay returns how long to hold a chunk read now.
func (p *Proxy) delay() time.Duration {
	d := time.Duration(p.latency.Load())
	if j := time.Duration(p.jitter.Load()); j > 0 {
		d += rand.N(j + 1)
	}
	return d
}

// reset closes c with an RST instead of a FIN when it is a TCP connection.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		// Linger 0 makes Close send RST; an error only means a FIN is sent.
		_ = tc.SetLinger(0)
	}
	// The connection is being thrown away; there is nothing to report.
	_ = c.Close()
}
