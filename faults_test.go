package ldapauth_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// bindAnswerSize measures how many bytes the directory sends in answer to
// a bind, so a proxy can hold back what follows: the search's answer.
func bindAnswerSize(t *testing.T, srv *ldaptest.Server) int64 {
	t.Helper()
	p := faultproxy.Start(t, hostPort(srv.URL()))
	l, err := ldap.DialURL(p.URL())
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.Bind(srv.UserDN("alice"), "alice-password"))
	n := p.ServerBytes()
	require.Positive(t, n)
	return n
}

// whenStalled calls f once the proxy has held back n answers: the requests
// are in flight, answered on the server's side, and the client waits. If
// fewer stall before the test ends, f is never called: the test asserts
// p.Stalled() to fail then.
func whenStalled(t *testing.T, p *faultproxy.Proxy, n int64, f func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p.WaitStalled(ctx, n) == nil {
			f()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// Cancelling ctx aborts the bind or the search in flight: the call returns
// ctx's error, the connection is dropped, and the next login works.
func TestCancellationMidOperation(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	bindSize := bindAnswerSize(t, srv)
	for _, mode := range accountModes {
		for _, step := range []struct {
			name  string
			stall int64
		}{{"mid-bind", 0}, {"mid-search", bindSize}} {
			t.Run(mode.name+"/"+step.name, func(t *testing.T) {
				p := faultproxy.Start(t, hostPort(srv.URL()))
				a, _ := poolAuth(t, srv, []string{p.URL()}, append(mode.opts(srv), func(c *ldapauth.Config) {
					c.ReceiveTimeout = time.Hour // only ctx can end the call
				})...)
				// On new connections the bind answers pass (the user's and
				// the service account's are the same size) and the search's
				// answer is held.
				p.StallAfter(step.stall)
				before := p.Accepted()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				whenStalled(t, p, 1, cancel)
				_, err := a.Authenticate(ctx, "alice", "alice-password")
				require.ErrorIs(t, err, context.Canceled)
				assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
				assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
				assert.Positive(t, p.Stalled(), "cancelled while the answer was held")

				p.StallAfter(-1)
				login(t, a, "bob")
				assert.Greater(t, p.Accepted(), before, "the cancelled connection was not reused")
			})
		}
	}
	t.Run("deadline mid-search", func(t *testing.T) {
		p := faultproxy.Start(t, hostPort(srv.URL()))
		a, _ := poolAuth(t, srv, []string{p.URL()}, func(c *ldapauth.Config) { c.ReceiveTimeout = time.Hour })
		p.StallAfter(bindSize)
		// The deadline must fall while the search's answer is held, after
		// the bind, which a loaded machine may take longer than 100 ms to
		// finish: a deadline that fell earlier is tried again, doubled.
		for timeout := 100 * time.Millisecond; ; timeout *= 2 {
			stalled := p.Stalled()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			_, err := a.Authenticate(ctx, "alice", "alice-password")
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, ldapauth.ErrUnavailable)
			if p.Stalled() > stalled {
				break // the search's answer was held when the deadline fell
			}
			require.Less(t, timeout, 10*time.Second, "the deadline never fell mid-search")
		}
	})
}

// The directory killed in the middle of a login: where the connection died
// before any answer to the login's first operation, that operation is sent
// once more on a new connection; after an answer, the call fails with
// ErrUnavailable. Either way the next login works and a wrong password is
// never accepted.
func TestKillServerMidLogin(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	bindSize := bindAnswerSize(t, srv)
	for _, tt := range []struct {
		name     string
		mode     int   // index into accountModes
		stall    int64 // bytes let through before the kill
		password string
		want     error // nil: the login succeeds
		stalls   int64 // answers held when the kill comes: one per connection
		accepted int64 // connections the login opened: its first ones, and those that sent an operation again
	}{
		{"user/mid-bind, right password: bind sent again", 0, 0, "alice-password", nil, 1, 2},
		{"user/mid-bind, wrong password: bind sent again", 0, 0, "wrong", ldapauth.ErrInvalidCredentials, 1, 2},
		{"user/mid-search: the bind was answered, not sent again", 0, bindSize, "alice-password", ldapauth.ErrUnavailable, 1, 1},
		{"service/mid-bind on both connections: both binds sent again", 1, 0, "alice-password", nil, 2, 4},
		{"service/mid-bind, wrong password", 1, 0, "wrong", ldapauth.ErrInvalidCredentials, 2, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mode := accountModes[tt.mode]
			p := faultproxy.Start(t, hostPort(srv.URL()))
			a, _ := poolAuth(t, srv, []string{p.URL()}, append(mode.opts(srv), func(c *ldapauth.Config) { c.ReceiveTimeout = time.Hour })...)
			p.StallAfter(tt.stall)
			whenStalled(t, p, tt.stalls, func() {
				p.CloseConnections() // first, so the held answer is never delivered
				p.StallAfter(-1)
			})
			ctx := safetyNet(t)
			u, err := a.Authenticate(ctx, "alice", tt.password)
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, "alice", u.Username)
			} else {
				require.ErrorIs(t, err, tt.want)
			}
			require.NoError(t, ctx.Err())
			require.Equal(t, tt.stalls, p.Stalled(), "the login's first answers were held, and the connections killed")
			assert.Equal(t, tt.accepted, p.Accepted(), "connections opened")
			login(t, a, "bob")
		})
	}
}

// A reset part-way through an answer fails the call (the request reached
// the server) and is not retried; the broken connection is not pooled.
func TestResetMidAnswer(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	for _, mode := range accountModes {
		t.Run(mode.name, func(t *testing.T) {
			p := faultproxy.Start(t, hostPort(srv.URL()))
			a, _ := poolAuth(t, srv, []string{p.URL()}, mode.opts(srv)...)
			p.CutAfter(3)
			_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
			require.ErrorIs(t, err, ldapauth.ErrUnavailable)
			// The login opens its connections in parallel and returns at the
			// first cut: the other may be cancelled before the proxy accepts
			// it, but a retry would be one more.
			assert.LessOrEqual(t, p.Accepted(), mode.conns, "not retried")
			p.CutAfter(0)
			login(t, a, "alice")
		})
	}
}

// Close closes every pooled connection, leaves no goroutine behind, and
// later calls fail.
func TestCloseReleasesEverything(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	p := faultproxy.Start(t, hostPort(srv.URL()))
	ignore := goleak.IgnoreCurrent()
	a, _ := poolAuth(t, srv, []string{p.URL()}, withService(srv))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			name := []string{"alice", "bob", "carol"}[i%3]
			_, err := a.Authenticate(context.Background(), name, name+"-password")
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "twice is fine")
	// The directory's accept loops start in the background and end with it.
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("github.com/glauth/ldap.(*Server).Serve.func1"))
	_, err := a.Authenticate(context.Background(), "alice", "alice-password")
	require.ErrorIs(t, err, net.ErrClosed)
}

// stormLogins is how many logins TestFaultStorm runs: 10,000 take about
// 30 s under -race on two cores, most of it waiting out timeouts; -short
// runs a tenth.
const stormLogins = 10_000

// Logins from many goroutines while a chaos goroutine injects every fault
// the proxies know into two servers: every call returns (bounded by the
// library's timeouts, not the callers' ctx), a wrong password is never
// accepted, a right one is only ever accepted or unavailable (or ended by
// the ctx of a caller that gave up), a login returns the user asked for,
// and no goroutine is left behind.
func TestFaultStorm(t *testing.T) {
	n := stormLogins
	if testing.Short() {
		n /= 10
	}
	ignore := goleak.IgnoreCurrent()
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	p1 := faultproxy.Start(t, hostPort(srv.URL()))
	p2 := faultproxy.Start(t, hostPort(srv.URL()))
	short := func(c *ldapauth.Config) {
		c.ConnectTimeout, c.ReceiveTimeout, c.PoolSize = 150*time.Millisecond, 150*time.Millisecond, 4
	}
	authUser, _ := poolAuth(t, srv, []string{p1.URL(), p2.URL()}, short)
	authService, _ := poolAuth(t, srv, []string{p1.URL(), p2.URL()}, short, withService(srv))
	for _, a := range []*ldapauth.Authenticator{authUser, authService} {
		ldapauth.SetClock(a, time.Now) // real back-off
	}

	stop := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rng.IntN(10)) * time.Millisecond):
			}
			p := []*faultproxy.Proxy{p1, p2}[rng.IntN(2)]
			p.SetMode(faultproxy.Pass)
			p.CutAfter(0)
			p.SetDelay(0)
			p.StallAfter(-1)
			switch r := rng.IntN(100); {
			case r < 55: // healthy
			case r < 63:
				p.SetMode(faultproxy.Refuse)
			case r < 68:
				p.SetMode(faultproxy.Blackhole)
			case r < 76:
				p.CutAfter(int64(1 + rng.IntN(60)))
			case r < 84:
				p.CloseConnections()
			case r < 92:
				p.Forget()
			case r < 97:
				p.SetDelay(time.Duration(rng.IntN(3000)) * time.Microsecond)
			default:
				p.StallAfter(int64(rng.IntN(40)))
			}
		}
	}()

	users := []string{"alice", "bob", "carol", "jürgen"}
	var next, ok, unavailable, cancelled atomic.Int64
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				a := []*ldapauth.Authenticator{authUser, authService}[rng.IntN(2)]
				name := users[rng.IntN(len(users))]
				password, right := name+"-password", true
				if rng.IntN(4) == 0 {
					password, right = users[rng.IntN(len(users))]+"x", false
				}
				net, netCancel := context.WithTimeout(context.Background(), 30*time.Second) // the safety net
				ctx, cancel := net, context.CancelFunc(func() {})
				givesUp := rng.IntN(20) == 0 // a caller that gives up part-way
				if givesUp {
					ctx, cancel = context.WithTimeout(net, time.Duration(rng.IntN(2000))*time.Microsecond)
				}
				u, err := a.Authenticate(ctx, name, password)
				// Only a caller whose own ctx ended may get a context error:
				// for the others it breaks "accepted or unavailable".
				gaveUp := givesUp && ctx.Err() != nil
				cancel()
				netErr := net.Err()
				netCancel()
				switch {
				case netErr != nil:
					report(fmt.Errorf("login %d (%s) was ended by the safety net: %v", i, name, err))
				case err == nil && !right:
					report(fmt.Errorf("login %d: %s logged in with a wrong password", i, name))
				case err == nil && u.Username != name:
					report(fmt.Errorf("login %d: asked for %s, got %s", i, name, u.Username))
				case err == nil:
					ok.Add(1)
				case gaveUp && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
					cancelled.Add(1)
				case errors.Is(err, ldapauth.ErrUnavailable):
					unavailable.Add(1)
				case !right && errors.Is(err, ldapauth.ErrInvalidCredentials):
				default:
					report(fmt.Errorf("login %d (%s, right password %v): unexpected error: %w", i, name, right, err))
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-chaosDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d logins: %d succeeded, %d unavailable, %d ended by the caller's ctx", n, ok.Load(), unavailable.Load(), cancelled.Load())
	assert.Positive(t, ok.Load(), "some logins succeed between faults")

	authUser.Close()
	authService.Close()
	p1.Close()
	p2.Close()
	srv.Close()
	goleak.VerifyNone(t, ignore)
}
