package faultproxy

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// Unreachable is an address on 127.0.0.1 where a TCP connect never
// completes, as with a server whose host is down or whose firewall drops
// packets: a listener whose accept queue (one connection long) is full
// and never accepted from, so Linux drops every SYN that arrives and the
// client waits until its own timeout. No connection reaches it.
type Unreachable struct {
	fd     int
	filler net.Conn
	addr   string
}

// NewUnreachable starts an Unreachable on a free port.
func NewUnreachable() (*Unreachable, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	u := &Unreachable{fd: fd}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		u.Close()
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil { // a queue of one
		u.Close()
		return nil, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		u.Close()
		return nil, err
	}
	u.addr = fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// The one connection the queue holds: it fills it.
	u.filler, err = net.DialTimeout("tcp", u.addr, 5*time.Second)
	if err != nil {
		u.Close()
		return nil, err
	}
	return u, nil
}

// StartUnreachable is NewUnreachable for tests: it fails tb on error and
// closes the listener when the test ends.
func StartUnreachable(tb testing.TB) *Unreachable {
	tb.Helper()
	u, err := NewUnreachable()
	if err != nil {
		tb.Fatalf("faultproxy: %v", err)
	}
	tb.Cleanup(u.Close)
	return u
}

// Addr returns the host:port where connects never complete.
func (u *Unreachable) Addr() string { return u.addr }

// URL returns ldap://<Addr>.
func (u *Unreachable) URL() string { return "ldap://" + u.addr }

// Close closes the listener: connects waiting on it are then refused or
// time out.
func (u *Unreachable) Close() {
	if u.filler != nil {
		u.filler.Close()
		u.filler = nil
	}
	if u.fd >= 0 {
		syscall.Close(u.fd)
		u.fd = -1
	}
}
