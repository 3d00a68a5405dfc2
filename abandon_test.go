package ldapauth_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gldap "github.com/glauth/ldap"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

// scriptedDir is an LDAP server on loopback, scripted with GLAuth's server
// library: the service account cn=svc and alice bind with their passwords;
// a search for alice finds her entry after foundDelay (an entry read, a
// big directory), a search for anyone else finds nothing at once; while
// hold is set, every search waits for release.
type scriptedDir struct {
	ln         net.Listener
	srv        *gldap.Server
	accepted   atomic.Int64
	foundDelay time.Duration
	hold       atomic.Bool
	release    chan struct{}
	searching  chan struct{} // receives when a held search starts
	conns      sync.WaitGroup
}

const scriptedBase = "dc=example,dc=com"

func startScripted(tb testing.TB, foundDelay time.Duration) *scriptedDir {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	d := &scriptedDir{foundDelay: foundDelay, release: make(chan struct{}), searching: make(chan struct{}, 16)}
	d.ln = &countingAccepts{Listener: ln, d: d}
	d.srv = gldap.NewServer()
	d.srv.BindFunc("", d)
	d.srv.SearchFunc("", d)
	d.srv.CloseFunc("", d)
	served := make(chan struct{})
	go func() { defer close(served); _ = d.srv.Serve(d.ln) }()
	tb.Cleanup(func() {
		d.Release()
		d.srv.Close()
		<-served
		d.conns.Wait() // the clients closed theirs
	})
	return d
}

type countingAccepts struct {
	net.Listener
	d *scriptedDir
}

func (l *countingAccepts) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.d.accepted.Add(1)
		l.d.conns.Add(1)
	}
	return c, err
}

func (d *scriptedDir) URL() string { return "ldap://" + d.ln.Addr().String() }

// Release lets the held searches, and every later one, through.
func (d *scriptedDir) Release() {
	if d.hold.CompareAndSwap(true, false) {
		close(d.release)
	}
}

func (d *scriptedDir) Bind(dn, pw string, _ net.Conn) (gldap.LDAPResultCode, error) {
	switch {
	case dn == "cn=svc,"+scriptedBase && pw == "svc-password", dn == "uid=alice,"+scriptedBase && pw == "alice-password":
		return gldap.LDAPResultSuccess, nil
	}
	return gldap.LDAPResultInvalidCredentials, nil
}

func (d *scriptedDir) Search(_ string, req gldap.SearchRequest, _ net.Conn) (gldap.ServerSearchResult, error) {
	if d.hold.Load() {
		d.searching <- struct{}{}
		<-d.release
	}
	if !strings.Contains(strings.ToLower(req.Filter), "(uid=alice)") {
		return gldap.ServerSearchResult{ResultCode: gldap.LDAPResultSuccess}, nil
	}
	time.Sleep(d.foundDelay)
	e := &gldap.Entry{DN: "uid=alice," + scriptedBase, Attributes: []*gldap.EntryAttribute{
		{Name: "uid", Values: []string{"alice"}}, {Name: "objectClass", Values: []string{"inetOrgPerson"}}}}
	return gldap.ServerSearchResult{Entries: []*gldap.Entry{e}, ResultCode: gldap.LDAPResultSuccess}, nil
}

func (d *scriptedDir) Close(string, net.Conn) error { d.conns.Done(); return nil }

func scriptedAuth(tb testing.TB, d *scriptedDir, poolSize int) *ldapauth.Authenticator {
	tb.Helper()
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{d.URL()}, SearchBase: scriptedBase, PoolSize: poolSize,
		ConnectionUsername: "cn=svc," + scriptedBase, ConnectionPassword: "svc-password",
		ReceiveTimeout: time.Minute})
	require.NoError(tb, err)
	tb.Cleanup(func() { a.Close() })
	return a
}

// A refused bind returns at once, whatever the service account's search
// is doing: here it is held by the server and the login still ends. The
// abandoned search then finishes in the background and its connection goes
// back to the pool (the next login dials nothing new); Close cuts a held
// one short. goleak (TestMain) finds no goroutine left.
func TestFailedBindAbandonsSearch(t *testing.T) {
	d := startScripted(t, 0)
	a := scriptedAuth(t, d, 1)
	_, err := a.Authenticate(safetyNet(t), "alice", "alice-password") // fill both pools
	require.NoError(t, err)
	require.Equal(t, int64(2), d.accepted.Load())

	d.hold.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(context.Background(), "alice", "wrong-password")
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	case <-time.After(30 * time.Second):
		d.Release()
		t.Fatal("the refused login waited for the service account's search")
	}
	<-d.searching // the search was really in flight, and still is
	d.Release()
	ldapauth.WaitAbandoned(a)
	_, err = a.Authenticate(safetyNet(t), "alice", "alice-password")
	require.NoError(t, err)
	assert.Equal(t, int64(2), d.accepted.Load(), "the abandoned search's connection was reused")
}

// Close does not wait for a held search to be answered: it cuts it short.
func TestCloseCutsAbandonedSearch(t *testing.T) {
	d := startScripted(t, 0)
	a := scriptedAuth(t, d, 1)
	d.hold.Store(true)
	_, err := a.Authenticate(safetyNet(t), "alice", "wrong-password")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	<-d.searching
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for the held search")
	}
	_, err = a.Authenticate(safetyNet(t), "alice", "alice-password")
	require.True(t, errors.Is(err, net.ErrClosed))
}

// BenchmarkWrongPassword: a wrong password for a known user (whose search
// takes 2 ms to read the entry) and for an unknown one (found at once),
// with a service account, one login every 3 ms (the pause not timed) so
// that the searches a refused login leaves behind do not exhaust the pool.
// The login returns when the bind fails, so both take the bind's time;
// before, the known user's refusal also waited for the search.
func BenchmarkWrongPassword(b *testing.B) {
	d := startScripted(b, 2*time.Millisecond)
	a := scriptedAuth(b, d, 8)
	for _, user := range []string{"known", "unknown"} {
		name := map[string]string{"known": "alice", "unknown": "nobody"}[user]
		b.Run(user, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				time.Sleep(3 * time.Millisecond)
				b.StartTimer()
				if _, err := a.Authenticate(context.Background(), name, "wrong-password"); !errors.Is(err, ldapauth.ErrInvalidCredentials) {
					b.Fatal(err)
				}
			}
		})
	}
}
