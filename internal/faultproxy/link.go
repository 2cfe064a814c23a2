package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// dialTimeout bounds the dial to the target for one client connection.
	dialTimeout = 5 * time.Second
	// readBufferSize is the largest chunk read in one call.
	readBufferSize = 32 << 10
	// queueLength is how many delayed chunks one direction holds before its
	// reader stops reading, which pushes back on the sender.
	queueLength = 64
)

// chunk is the result of one read, due to be written at due.
type chunk struct {
	data []byte
	due  time.Time
}

// link is one client connection and, once dialed, its connection to the
// target. Each direction has a reader goroutine that stamps chunks with their
// due time and a writer goroutine that writes them in order; a single queue
// per direction keeps the byte order whatever the delays.
type link struct {
	p      *Proxy
	client net.Conn

	blackholed atomic.Bool  // drop all bytes; set by Blackhole or at accept
	open       atomic.Int32 // directions not yet finished with EOF

	done      chan struct{} // closed by close
	closeOnce sync.Once

	mu         sync.Mutex         // guards the fields below
	server     net.Conn           // nil until dialed
	cancelDial context.CancelFunc // non-nil while dialing
}

// newLink returns a link for client.
func newLink(p *Proxy, client net.Conn) *link {
	return &link{p: p, client: client, done: make(chan struct{})}
}

// closed reports whether close has been called.
func (l *link) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// close closes both connections, with an RST to the client if rst is set,
// aborts a dial in progress and forgets the link. It is idempotent.
func (l *link) close(rst bool) {
	l.closeOnce.Do(func() {
		close(l.done)
		l.mu.Lock()
		server, cancel := l.server, l.cancelDial
		l.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		if rst {
			reset(l.client)
		} else {
			// The link is going away; a close error changes nothing.
			_ = l.client.Close()
		}
		if server != nil {
			_ = server.Close()
		}
		l.p.forget(l)
	})
}

// run dials the target and starts forwarding in both directions.
func (l *link) run() {
	defer l.p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	l.mu.Lock()
	if l.closed() {
		l.mu.Unlock()
		return
	}
	l.cancelDial = cancel
	l.mu.Unlock()

	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", l.p.target)
	if err != nil {
		// The target refused or is unreachable: show the client a reset,
		// as it would see without the proxy.
		l.close(true)
		return
	}

	l.mu.Lock()
	l.cancelDial = nil
	if l.closed() {
		l.mu.Unlock()
		_ = server.Close()
		return
	}
	l.server = server
	l.mu.Unlock()

	l.open.Store(2)
	l.pipe(l.client, server, true)
	l.pipe(server, l.client, false)
}

// pipe starts forwarding from src to dst. fromClient tells which way it goes.
func (l *link) pipe(src, dst net.Conn, fromClient bool) {
	q := make(chan chunk, queueLength)
	l.p.wg.Add(2)
	go l.read(src, q, fromClient)
	go l.write(dst, q, fromClient)
}

// read reads chunks from src, stamps each with its due time and queues it.
// It closes q when src ends.
func (l *link) read(src net.Conn, q chan<- chunk, fromClient bool) {
	defer l.p.wg.Done()
	defer close(q)
	buf := make([]byte, readBufferSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c := chunk{data: bytes.Clone(buf[:n]), due: time.Now().Add(l.p.delay())}
			select {
			case q <- c:
			case <-l.done:
				return
			}
		}
		if err == nil {
			continue
		}
		// EOF is handled by write once the queue is drained. Any other
		// error is a reset, passed on to the client at once, except that
		// a blackholed client hears nothing from the server side.
		if !errors.Is(err, io.EOF) && (fromClient || !l.blackholed.Load()) {
			l.close(true)
		}
		return
	}
}

// write writes the queued chunks to dst when they are due, or drops them
// while the link is blackholed. When the queue ends it passes the EOF on.
func (l *link) write(dst net.Conn, q <-chan chunk, fromClient bool) {
	defer l.p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for c := range q {
		if l.blackholed.Load() {
			continue
		}
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.done:
				timer.Stop()
				return
			}
		}
		// Check again: Blackhole may have been called while waiting.
		if l.blackholed.Load() {
			continue
		}
		if _, err := dst.Write(c.data); err != nil {
			l.close(true)
			return
		}
	}
	if l.closed() {
		return
	}
	if l.blackholed.Load() {
		// The client hung up: nothing is left to keep silent. The server
		// hanging up is not passed on, so the link stays silent.
		if fromClient {
			l.close(false)
		}
		return
	}
	// Pass the EOF on as a half-close, and close the link once both
	// directions have ended.
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	if l.open.Add(-1) == 0 {
		l.close(false)
	}
}

// swallow reads and drops everything the client sends on a link that was
// blackholed from the start, until the client or the proxy closes it.
func (l *link) swallow() {
	defer l.p.wg.Done()
	// The copy ends with the connection; its error says nothing new.
	_, _ = io.Copy(io.Discard, l.client)
	l.close(false)
}
