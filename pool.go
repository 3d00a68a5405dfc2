package ldapauth

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Back-off of a server that failed: probed again backoffMin after its
// first failure, the wait doubling with each failure in a row up to
// backoffMax. Any answer from the server ends it.
const (
	backoffMin = time.Second
	backoffMax = 30 * time.Second
)

// health is the state of one server: up, or down since a failure and in
// back-off until a given time. A server is marked down by any failure
// (connect, TLS, a receive timeout, busy or unavailable) and up by any
// answer, whether to a login or to the prober.
type health struct {
	failures atomic.Int32 // failures in a row, 0 when up; read without the lock on the fast path
	mu       sync.Mutex
	until    time.Time   // probed again from then on
	probing  atomic.Bool // a probe is checking it
	// lagging counts the connects to it that lost to a hedge and are
	// still in flight: while one is, the server is up but a connect to it
	// hangs, so logins try the other servers first (see order).
	lagging atomic.Int32
}

// down records a failure at now. Failures within the back-off period
// count as one: the logins that were in flight when a server hung all fail
// with it, and must not stretch its back-off (and so the wait for its next
// probe) to the cap at once.
func (h *health) down(now time.Time) {
	h.mu.Lock()
	if h.failures.Load() > 0 && now.Before(h.until) {
		h.mu.Unlock()
		return
	}
	n := h.failures.Add(1)
	d := backoffMax
	if n <= 5 { // 1, 2, 4, 8, 16 s, then the cap
		d = min(backoffMin<<(n-1), backoffMax)
	}
	h.until = now.Add(d)
	h.mu.Unlock()
}

// up records an answer: the server is healthy again.
func (h *health) up() {
	if h.failures.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures.Store(0)
	h.until = time.Time{}
}

// isUp reports whether the server is known up: it answered last time.
func (h *health) isUp() bool { return h.failures.Load() == 0 }

// due reports whether the server is down and its back-off is over at now:
// time to try it again.
func (h *health) due(now time.Time) bool {
	if h.failures.Load() == 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures.Load() > 0 && !now.Before(h.until)
}

// order returns the indexes of the servers in the order a dial tries
// them: those known up, in configuration order, those with a connect that
// lost to a hedge still in flight last of them; then, reached only when
// all of those failed, those marked down, the ones out of back-off first.
// A login never waits on a server marked down while another is up (the
// prober finds when it is back), and is never refused without trying
// every server. ready counts the servers up and not lagging, which come
// first: the only ones a hedge starts a connect to.
func (a *Authenticator) order() (ord []int, ready int) {
	now := a.now()
	const up, lagging, due, waiting = 0, 1, 2, 3
	state := make([]int, len(a.servers)) // read once: another call may change it
	for i := range a.servers {
		switch {
		case a.health[i].isUp() && a.health[i].lagging.Load() > 0:
			state[i] = lagging
		case a.health[i].isUp():
			state[i] = up
		case a.health[i].due(now):
			state[i] = due
		default:
			state[i] = waiting
		}
	}
	ord = make([]int, 0, len(a.servers))
	for _, want := range []int{up, lagging, due, waiting} {
		for i, st := range state {
			if st == want {
				ord = append(ord, i)
			}
		}
		if want == up {
			ready = len(ord)
		}
	}
	return ord, ready
}

// preferred returns the first server known up, one without a connect
// that lost to a hedge in flight if there is one, or -1 when all are
// down.
func (a *Authenticator) preferred() int {
	first := -1
	for i := range a.servers {
		if a.health[i].isUp() {
			if a.health[i].lagging.Load() == 0 {
				return i
			}
			if first < 0 {
				first = i
			}
		}
	}
	return first
}

// pool keeps idle connections of one kind for later logins: at most size,
// each for at most idleTimeout, the most recently used first. It never
// makes a caller wait: with none idle, the caller dials.
type pool struct {
	a    *Authenticator
	size int // <= 0: no pooling

	mu     sync.Mutex
	idle   []*conn
	closed bool
	n      poolCounters // for Stats
}

// get returns an idle connection that still looks usable, or nil. It
// closes the ones that do not: found closed by the server, idle too long,
// or, while a server is known up, to any other than the first such server:
// one marked down since, or one after a server that is back up (so the
// logins return to the first server of LDAP_AUTH_URL).
func (p *pool) get() *conn {
	if p.size <= 0 {
		return nil
	}
	now := p.a.now()
	pref := p.a.preferred()
	var stale []*conn
	var found *conn
	p.mu.Lock()
	for len(p.idle) > 0 && found == nil {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if c.dead() || now.Sub(c.idleSince) >= p.a.cfg.PoolIdleTimeout || (pref >= 0 && c.server != pref) {
			stale = append(stale, c)
			continue
		}
		found = c
	}
	p.mu.Unlock()
	p.n.staleClosed.Add(uint64(len(stale)))
	for _, c := range stale {
		c.close()
	}
	if found != nil {
		found.reused = true
	}
	return found
}

// put returns c to the pool, or closes it when it is broken, the pool is
// full or closed, or pooling is off. put(nil) does nothing.
func (p *pool) put(c *conn) {
	if c == nil {
		return
	}
	if c.broken || c.dead() || p.size <= 0 {
		c.close()
		return
	}
	c.idleSince = p.a.now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.size {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// close closes every idle connection; connections in use are closed when
// they are put back.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// wireConn is the TCP connection under TLS and LDAP. It records whether any
// read or write failed and how many bytes have arrived, which is how a
// connection that died before answering is told from one that answered.
type wireConn struct {
	net.Conn
	read   atomic.Int64
	failed atomic.Bool
}

func (w *wireConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	w.read.Add(int64(n))
	if err != nil {
		w.failed.Store(true)
	}
	return n, err
}

func (w *wireConn) Write(b []byte) (int, error) {
	n, err := w.Conn.Write(b)
	if err != nil {
		w.failed.Store(true)
	}
	return n, err
}
