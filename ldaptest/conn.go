package ldaptest

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// connTracker remembers every connection the server accepted so that Close
// and CloseClientConnections can end them: GLAuth's ldap.Server never closes
// the connections its handleConnection goroutines serve.
type connTracker struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	// serving counts the connections handed to GLAuth whose handler loop
	// has not yet called the server's Closer (its last step).
	serving sync.WaitGroup
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[*trackedConn]struct{})}
}

// add tracks c; it reports false (and closes c) once the tracker is closed.
func (t *connTracker) add(c net.Conn) (*trackedConn, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, false
	}
	tc := &trackedConn{Conn: c, tracker: t}
	t.conns[tc] = struct{}{}
	t.serving.Add(1)
	return tc, true
}

func (t *connTracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

// closeAll closes every open connection; with final, it also refuses new ones.
func (t *connTracker) closeAll(final bool) {
	t.mu.Lock()
	if final {
		t.closed = true
	}
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// trackedConn is a connection the server accepted. Once the server side has
// closed it, its reads report io.EOF, so that GLAuth's connection loop ends
// as if the client had hung up instead of logging a read error.
type trackedConn struct {
	net.Conn
	tracker *connTracker
	closed  atomic.Bool
	once    sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.closed.Load() {
		err = io.EOF
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.closed.Store(true)
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.tracker.remove(c)
	})
	return err
}

// trackingListener hands every accepted connection to a connTracker and
// tells when GLAuth's accept goroutine has seen its last Accept.
type trackingListener struct {
	net.Listener
	tracker  *connTracker
	closing  atomic.Bool
	doneOnce sync.Once
	done     chan struct{} // closed when Accept has returned an error
}

func newTrackingListener(ln net.Listener, t *connTracker) *trackingListener {
	return &trackingListener{Listener: ln, tracker: t, done: make(chan struct{})}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if l.closing.Load() {
				// GLAuth's accept loop ends quietly only on an error that
				// reads "use of closed network connection".
				err = net.ErrClosed
			}
			l.doneOnce.Do(func() { close(l.done) })
			return nil, err
		}
		tc, ok := l.tracker.add(c)
		if !ok {
			continue // closing: the next Accept fails
		}
		return tc, nil
	}
}

func (l *trackingListener) Close() error {
	l.closing.Store(true)
	err := l.Listener.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil // GLAuth's Serve closes it a second time
	}
	return err
}
