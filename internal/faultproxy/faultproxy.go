// Package faultproxy is a TCP proxy on 127.0.0.1 that injects the network
// faults a directory server cannot be asked to produce: a server that
// accepts and never answers, a connection reset part-way through a
// response, a response held back while the client waits, slow packets,
// connections dropped all at once, and connections the server forgot
// without telling the client.
package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode says what the proxy does with new connections.
type Mode int32

const (
	// Pass forwards traffic both ways (subject to CutAfter and SetDelay).
	Pass Mode = iota
	// Blackhole accepts connections and never answers nor forwards.
	Blackhole
	// Refuse closes each connection as soon as it is accepted.
	Refuse
	// Hold accepts connections and holds each one, reading and sending
	// nothing, until the mode changes; it then goes on as the new mode
	// says: a server slow to start its handshake. Each connection held
	// counts as a stall (Stalled, WaitStalled).
	Hold
)

// Proxy forwards 127.0.0.1:<port> to a target address.
type Proxy struct {
	ln       net.Listener
	target   string
	mode     atomic.Int32
	cutAfter atomic.Int64 // bytes server→client before a reset; 0: never
	delay    atomic.Int64 // per chunk, nanoseconds
	accepted atomic.Int64
	open     atomic.Int64 // client connections not yet closed

	stallAfter  atomic.Int64 // bytes server→client before holding the rest; <0: never
	stalled     atomic.Int64 // chunks held back so far
	serverBytes atomic.Int64 // bytes forwarded server→client, all connections
	forgetGen   atomic.Int64 // connections opened before the latest Forget are forgotten
	front       atomic.Pointer[front]
	binds       atomic.Int64
	searches    atomic.Int64

	stallMu sync.Mutex
	stallCh chan struct{} // closed, and replaced, at each stall: WaitStalled's signal

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	done  chan struct{}
	once  sync.Once
}

// New starts a proxy to target (host:port) on 127.0.0.1 with a free port.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, done: make(chan struct{}), stallCh: make(chan struct{})}
	p.stallAfter.Store(-1)
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Start is New for tests: it fails tb on error and closes the proxy when
// the test ends.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := New(target)
	if err != nil {
		tb.Fatalf("faultproxy: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns ldap://<Addr>.
func (p *Proxy) URL() string { return "ldap://" + p.Addr() }

// SetMode sets what happens to connections accepted from now on; Blackhole
// and Refuse also apply to connections already open at their next chunk,
// Hold only to new ones.
func (p *Proxy) SetMode(m Mode) { p.mode.Store(int32(m)) }

// CutAfter makes every connection reset once n bytes have gone from the
// server to the client, counted per connection; 0 turns it off.
func (p *Proxy) CutAfter(n int64) { p.cutAfter.Store(n) }

// SetDelay delays every chunk forwarded, either way, by d.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// StallAfter makes every connection hold back what the server sends once
// n bytes have gone from the server to the client, counted per
// connection: the client waits for an answer the server has given. The
// held connections stay open until the client closes them, the proxy
// closes, or StallAfter(-1) lets the rest through. A negative n (the
// default) turns it off; 0 holds back the first answer.
func (p *Proxy) StallAfter(n int64) { p.stallAfter.Store(n) }

// Stalled returns how many times a connection has started holding back
// the server's bytes: a test waits for it to know a request is in flight
// and answered on the server's side.
func (p *Proxy) Stalled() int64 { return p.stalled.Load() }

// ErrClosed is WaitStalled's error when the proxy closed first.
var ErrClosed = errors.New("faultproxy: closed")

// WaitStalled blocks until connections have started holding back the
// server's bytes n times in all (Stalled() >= n), so a test acts only once
// a request is in flight and answered on the server's side. It returns
// ctx's error if ctx ends first and ErrClosed if the proxy closes first: a
// test that waits for a stall fails when none happened.
func (p *Proxy) WaitStalled(ctx context.Context, n int64) error {
	for {
		p.stallMu.Lock()
		ch := p.stallCh
		p.stallMu.Unlock()
		if p.stalled.Load() >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return ErrClosed
		}
	}
}

// noteStall counts a stall and wakes WaitStalled.
func (p *Proxy) noteStall() {
	p.stallMu.Lock()
	defer p.stallMu.Unlock()
	p.stalled.Add(1)
	close(p.stallCh)
	p.stallCh = make(chan struct{})
}

// ServerBytes returns how many bytes have gone from the server to clients,
// each chunk counted before it is written, so a client that has read bytes
// finds them counted.
func (p *Proxy) ServerBytes() int64 { return p.serverBytes.Load() }

// Forget makes the server forget every open connection without telling
// the client, as when a server closed an idle connection and a firewall
// ate the FIN: nothing happens until the client sends, then its bytes are
// never delivered and the client gets a reset. Connections opened after
// Forget are not affected.
func (p *Proxy) Forget() { p.forgetGen.Add(1) }

// Open returns how many of the connections the proxy accepted are still
// open on its side.
func (p *Proxy) Open() int64 { return p.open.Load() }

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// CloseConnections drops every open connection, as a server restart or an
// idle timeout on the server would. The proxy keeps listening.
func (p *Proxy) CloseConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy, drops every connection and waits for its
// goroutines to end.
func (p *Proxy) Close() {
	p.once.Do(func() {
		close(p.done)
		p.ln.Close()
		p.CloseConnections()
		p.wg.Wait()
	})
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		c.Close()
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if !p.track(client) {
			continue
		}
		p.open.Add(1)
		p.wg.Add(1)
		go p.handle(client)
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	defer p.open.Add(-1)
	defer p.untrack(client)
	if Mode(p.mode.Load()) == Hold {
		p.noteStall()
		if !p.release(client) {
			return
		}
	}
	switch Mode(p.mode.Load()) {
	case Refuse:
		return
	case Blackhole:
		_, _ = io.Copy(&sniffer{p: p}, client) // until the client or Close ends it
		return
	}
	if f := p.front.Load(); f != nil {
		c, ok := p.terminate(client, f)
		if !ok {
			return
		}
		client = c // the raw connection stays tracked: closing it ends this one
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	gen := p.forgetGen.Load()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, false, gen); server.Close() }()
	go func() { defer wg.Done(); p.pipe(client, server, true, gen); client.Close() }()
	wg.Wait()
}

// pipe copies src to dst chunk by chunk, applying the faults.
func (p *Proxy) pipe(dst, src net.Conn, toClient bool, gen int64) {
	buf := make([]byte, 32*1024)
	var sent int64
	requests := &sniffer{p: p, off: toClient}
	for {
		n, err := src.Read(buf)
		if n > 0 && !toClient && p.forgetGen.Load() != gen {
			// The server forgot this connection: its kernel answers with
			// a reset and the bytes are never delivered.
			reset(src)
			dst.Close()
			return
		}
		if n > 0 {
			if !p.delayChunk() {
				return
			}
			chunk := buf[:n]
			requests.feed(chunk)
			if toClient {
				var ok bool
				if chunk, sent, ok = p.stallChunk(dst, src, chunk, sent); !ok {
					return
				}
				if p.cutChunk(dst, src, chunk, sent) {
					return
				}
				p.serverBytes.Add(int64(len(chunk))) // counted before the client can read it
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
			sent += int64(len(chunk))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				reset(dst)
			}
			return
		}
	}
}

// delayChunk waits out SetDelay's delay and reports whether the chunk may
// go on: not once the proxy is closed or the mode is Blackhole or Refuse.
func (p *Proxy) delayChunk() bool {
	if d := time.Duration(p.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-p.done:
			return false
		}
	}
	m := Mode(p.mode.Load())
	return m != Blackhole && m != Refuse
}

// stallChunk, past StallAfter's limit, writes the head of a server chunk
// up to the limit and holds the rest until stalling is off; it returns the
// rest, the bytes sent, and false if the connection is to end.
func (p *Proxy) stallChunk(dst, src net.Conn, chunk []byte, sent int64) ([]byte, int64, bool) {
	stall := p.stallAfter.Load()
	if stall < 0 || sent+int64(len(chunk)) <= stall {
		return chunk, sent, true
	}
	head := chunk[:max(0, stall-sent)]
	p.serverBytes.Add(int64(len(head))) // counted before the client can read it
	if _, werr := dst.Write(head); werr != nil {
		return chunk, sent, false
	}
	sent += int64(len(head))
	p.noteStall()
	return chunk[len(head):], sent, p.hold(dst, src)
}

// cutChunk, at CutAfter's limit, writes a server chunk up to the limit and
// resets both sides; it reports whether it did.
func (p *Proxy) cutChunk(dst, src net.Conn, chunk []byte, sent int64) bool {
	limit := p.cutAfter.Load()
	if limit <= 0 || sent+int64(len(chunk)) < limit {
		return false
	}
	_, _ = dst.Write(chunk[:max(0, limit-sent)])
	reset(dst)
	reset(src)
	return true
}

// hold waits until stalling is turned off (true), or either side of the
// connection or the proxy is closed (false).
func (p *Proxy) hold(client, server net.Conn) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return false
		case <-tick.C:
		}
		if p.stallAfter.Load() < 0 {
			return true
		}
		// A zero-length write fails only on a closed socket: closed by
		// CloseConnections, or by the other pipe when the client left.
		if _, err := client.Write(nil); err != nil {
			return false
		}
		if _, err := server.Write(nil); err != nil {
			return false
		}
	}
}

// release waits until the mode is no longer Hold (true), or the client
// connection or the proxy is closed (false).
func (p *Proxy) release(client net.Conn) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return false
		case <-tick.C:
		}
		if Mode(p.mode.Load()) != Hold {
			return true
		}
		if _, err := client.Write(nil); err != nil {
			return false
		}
	}
}

// reset closes c with a TCP RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
