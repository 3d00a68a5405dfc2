package ldapauth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// fakeClock is the clock of the back-off and the pool's idle timeout:
// tests move it instead of sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// hostPort returns the host:port of an ldap:// or ldaps:// URL.
func hostPort(url string) string {
	_, hp, _ := strings.Cut(url, "://")
	return hp
}

// withService configures the directory's service account.
func withService(srv *ldaptest.Server) func(*ldapauth.Config) {
	return func(cfg *ldapauth.Config) {
		cfg.ConnectionUsername = srv.UserDN("svc")
		cfg.ConnectionPassword = "svc-password"
	}
}

// poolAuth returns an Authenticator for srv's directory at urls (which may
// be proxies in front of it) with a fake clock, closed when the test ends.
// TLS trusts srv's CA. The timeouts are short, the servers being on
// loopback, yet long enough for a loaded CI machine running -race.
func poolAuth(t testing.TB, srv *ldaptest.Server, urls []string, opts ...func(*ldapauth.Config)) (*ldapauth.Authenticator, *fakeClock) {
	t.Helper()
	cfg, err := ldapauth.LoadConfig(env(srv.Env()))
	require.NoError(t, err)
	cfg.URLs = urls
	cfg.TLSConfig = &tls.Config{RootCAs: srv.CAPool(), MinVersion: tls.VersionTLS12}
	cfg.ConnectTimeout = time.Second
	cfg.ReceiveTimeout = time.Second
	for _, o := range opts {
		o(cfg)
	}
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	ldapauth.SetClock(a, clock.Now)
	t.Cleanup(func() { a.Close() })
	return a, clock
}

// safetyNet is a ctx that ends a call the library failed to bound; a test
// asserts it did not.
func safetyNet(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// accountModes are the two login flows: the search as the user on the
// user's connection, and the search as the service account on its own.
var accountModes = []struct {
	name  string
	conns int64 // connections one login opens
	opts  func(*ldaptest.Server) []func(*ldapauth.Config)
}{
	{"user", 1, func(*ldaptest.Server) []func(*ldapauth.Config) { return nil }},
	{"service", 2, func(s *ldaptest.Server) []func(*ldapauth.Config) {
		return []func(*ldapauth.Config){withService(s)}
	}},
}

// Pooled connections are reused across logins of different users, each
// login binding again: a wrong password after a good login on the same
// connection is refused. Without a pool each login dials.
func TestPoolReusesConnectionsAndRebinds(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	for _, mode := range accountModes {
		for _, pool := range []struct {
			name string
			size int
		}{{"pooled", 1}, {"dial per login", -1}} {
			t.Run(mode.name+"/"+pool.name, func(t *testing.T) {
				p := faultproxy.Start(t, hostPort(srv.URL()))
				a, _ := poolAuth(t, srv, []string{p.URL()}, append(mode.opts(srv), func(c *ldapauth.Config) { c.PoolSize = pool.size })...)
				steps := []struct{ user, password string }{
					{"alice", "alice-password"},
					{"bob", "wrong"}, // on alice's connection
					{"bob", "bob-password"},
					{"nobody", "alice-password"},
					{"alice", "bob-password"},
					{"jürgen", "jürgen-password"},
				}
				for _, s := range steps {
					u, err := a.Authenticate(safetyNet(t), s.user, s.password)
					if s.password == s.user+"-password" {
						require.NoError(t, err, s.user)
						assert.Equal(t, s.user, u.Username)
					} else {
						require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "%s with %s", s.user, s.password)
						// The refused login returned without waiting for the
						// service account's search; let it put its
						// connection back before the next login.
						ldapauth.WaitAbandoned(a)
					}
				}
				want := mode.conns
				if pool.size == -1 {
					want = mode.conns * int64(len(steps))
				}
				assert.Equal(t, want, p.Accepted())
			})
		}
	}
}

// A connection dropped while it sat in the pool never fails a login: it is
// found closed and replaced, or, when the drop is only seen on sending the
// bind, the bind runs again on a new connection.
func TestStalePooledConnection(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	faults := []struct {
		name  string
		fault func(p *faultproxy.Proxy, clock *fakeClock)
	}{
		{"server closed it", func(p *faultproxy.Proxy, _ *fakeClock) { p.CloseConnections() }},
		{"server forgot it: reset on the next send", func(p *faultproxy.Proxy, _ *fakeClock) { p.Forget() }},
		{"directory dropped every client", func(*faultproxy.Proxy, *fakeClock) { srv.CloseClientConnections() }},
		{"idle past the idle timeout", func(_ *faultproxy.Proxy, c *fakeClock) { c.Advance((180 * time.Second)) }},
	}
	for _, mode := range accountModes {
		for _, f := range faults {
			t.Run(mode.name+"/"+f.name, func(t *testing.T) {
				p := faultproxy.Start(t, hostPort(srv.URL()))
				a, clock := poolAuth(t, srv, []string{p.URL()}, mode.opts(srv)...)
				login(t, a, "alice")
				require.Equal(t, mode.conns, p.Accepted())

				f.fault(p, clock)
				login(t, a, "bob")
				assert.Equal(t, 2*mode.conns, p.Accepted(), "new connections replaced the dropped ones")
				_, err := a.Authenticate(safetyNet(t), "bob", "wrong")
				require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
				assert.Equal(t, 2*mode.conns, p.Accepted(), "and are pooled in turn")
			})
		}
	}
}

// A real OpenLDAP restarting between logins costs no login.
func TestServerRestart(t *testing.T) {
	s := slapdtest.Start(t)
	for _, mode := range []struct {
		name string
		opts func(*ldapauth.Config)
	}{
		{"user", func(*ldapauth.Config) {}},
		{"service", func(c *ldapauth.Config) {
			c.ConnectionUsername, c.ConnectionPassword = slapdtest.ServiceDN, slapdtest.ServicePassword
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			cfg := &ldapauth.Config{URLs: []string{s.URL}, SearchBase: slapdtest.PeopleDN,
				ConnectTimeout: time.Second, ReceiveTimeout: time.Second}
			mode.opts(cfg)
			a, err := ldapauth.New(cfg)
			require.NoError(t, err)
			defer a.Close()
			for i := range 3 {
				_, err := a.Authenticate(safetyNet(t), "alice", slapdtest.Password("alice"))
				require.NoError(t, err, "login %d", i)
				s.Restart(t)
			}
		})
	}
}

// The first server down, the second alive: the second serves the login.
func TestFailoverFirstDeadSecondAlive(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	for _, tt := range []struct {
		name   string
		target func() string // the live server's address
		first  func(t *testing.T) string
		opts   func(*ldapauth.Config)
	}{
		{"nothing listening", srv.URL, closedURL, nil},
		{"accepts and closes", srv.URL, func(t *testing.T) string {
			p := faultproxy.Start(t, hostPort(srv.URL()))
			p.SetMode(faultproxy.Refuse)
			return p.URL()
		}, nil},
		{"LDAPS, accepts and never answers", srv.LDAPSURL, func(t *testing.T) string {
			p := faultproxy.Start(t, hostPort(srv.LDAPSURL()))
			p.SetMode(faultproxy.Blackhole)
			return "ldaps://" + p.Addr()
		}, nil},
		{"StartTLS, accepts and never answers", srv.URL, func(t *testing.T) string {
			p := faultproxy.Start(t, hostPort(srv.URL()))
			p.SetMode(faultproxy.Blackhole)
			return p.URL()
		}, func(c *ldapauth.Config) { c.UseTLS = true }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			second := faultproxy.Start(t, hostPort(tt.target()))
			scheme, _, _ := strings.Cut(tt.target(), "://")
			opts := []func(*ldapauth.Config){}
			if tt.opts != nil {
				opts = append(opts, tt.opts)
			}
			a, _ := poolAuth(t, srv, []string{tt.first(t), scheme + "://" + second.Addr()}, opts...)
			ctx := safetyNet(t)
			u, err := a.Authenticate(ctx, "alice", "alice-password")
			require.NoError(t, err)
			assert.Equal(t, "alice", u.Username)
			assert.Equal(t, int64(1), second.Accepted(), "served by the second")
		})
	}
}

// Every server down: ErrUnavailable, bounded by the connect timeouts, never
// by the caller's ctx.
func TestAllServersDown(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	proxies := func(t *testing.T, target string, n int, mode faultproxy.Mode) ([]string, []*faultproxy.Proxy) {
		var urls []string
		var ps []*faultproxy.Proxy
		scheme, _, _ := strings.Cut(target, "://")
		for range n {
			p := faultproxy.Start(t, hostPort(target))
			p.SetMode(mode)
			urls = append(urls, scheme+"://"+p.Addr())
			ps = append(ps, p)
		}
		return urls, ps
	}
	// tried says how many servers one call tries: all, but where a server
	// accepts a plain connection and never answers, the bind's receive
	// timeout ends the call (the bind is not sent twice) and the server's
	// back-off sends the next login to the next server.
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T) ([]string, []*faultproxy.Proxy)
		opts  func(*ldapauth.Config)
		tried int
	}{
		{"nothing listening", func(t *testing.T) ([]string, []*faultproxy.Proxy) {
			return []string{closedURL(t), closedURL(t), closedURL(t)}, nil
		}, nil, 0},
		{"accept and close", func(t *testing.T) ([]string, []*faultproxy.Proxy) {
			return proxies(t, srv.URL(), 2, faultproxy.Refuse)
		}, nil, 2},
		{"LDAPS, accept and never answer", func(t *testing.T) ([]string, []*faultproxy.Proxy) {
			return proxies(t, srv.LDAPSURL(), 3, faultproxy.Blackhole)
		}, nil, 3},
		{"StartTLS, accept and never answer", func(t *testing.T) ([]string, []*faultproxy.Proxy) {
			return proxies(t, srv.URL(), 3, faultproxy.Blackhole)
		}, func(c *ldapauth.Config) { c.UseTLS = true }, 3},
		{"plain, accept and never answer", func(t *testing.T) ([]string, []*faultproxy.Proxy) {
			return proxies(t, srv.URL(), 2, faultproxy.Blackhole)
		}, nil, 1},
	} {
		for _, mode := range accountModes {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				urls, ps := tt.setup(t)
				opts := mode.opts(srv)
				if tt.opts != nil {
					opts = append(opts, tt.opts)
				}
				a, _ := poolAuth(t, srv, urls, opts...)
				ctx := safetyNet(t)
				_, err := a.Authenticate(ctx, "alice", "alice-password")
				require.ErrorIs(t, err, ldapauth.ErrUnavailable)
				assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
				assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
				require.NoError(t, ctx.Err(), "the library's timeouts ended the call, not the safety net")
				var tried int
				for _, p := range ps {
					tried += int(min(p.Accepted(), 1))
				}
				if tt.tried > 0 {
					assert.Equal(t, tt.tried, tried, "servers tried")
				}
			})
		}
	}
}

// An unreachable server is logged at Warn only when another server then
// served the login; when none did, the returned error says it all and
// nothing is logged above Debug.
func TestUnreachableServerLogging(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	for _, tt := range []struct {
		name     string
		urls     []string
		failover bool
	}{
		{"failover", []string{closedURL(t), srv.URL()}, true},
		{"all down", []string{closedURL(t), closedURL(t)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a, _ := poolAuth(t, srv, tt.urls, func(c *ldapauth.Config) {
				c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			logs.Reset() // New's warning about plain ldap:// (TestInsecureTransportWarnings)
			_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
			if tt.failover {
				require.NoError(t, err)
				assert.Contains(t, logs.String(), `"level":"WARN","msg":"ldapauth: failed over to another server"`)
				assert.Equal(t, 1, strings.Count(logs.String(), "\n"), "one record: %s", logs.String())
			} else {
				require.ErrorIs(t, err, ldapauth.ErrUnavailable)
				assert.Empty(t, logs.String(), "the error is returned, not logged")
			}
		})
	}
}
