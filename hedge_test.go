package ldapauth_test

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// hedgeAuth is failoverAuth with a connect timeout only the test's
// safety net could end (so a login served at all was served by a hedge)
// and a hedge delay short enough that every connect not already done
// hedges.
func hedgeAuth(t *testing.T, srv *ldaptest.Server, tr transport, cs *certs, urls []string) *ldapauth.Authenticator {
	a, _ := poolAuth(t, srv, urls, func(c *ldapauth.Config) {
		failoverCfg(c, tr, cs)
		c.ConnectTimeout = time.Hour
		c.HedgeDelay = time.Millisecond
	})
	return a
}

// failoverCfg applies failoverAuth's settings to c.
func failoverCfg(c *ldapauth.Config, tr transport, cs *certs) {
	c.PoolSize = -1
	c.UseTLS = tr.startTLS
	c.TLSConfig = &tls.Config{RootCAs: cs.pool, MinVersion: tls.VersionTLS12}
}

// A black-holed server (its TLS or StartTLS handshake never completes)
// before a healthy one, with two and three servers: the login is served
// by the healthy one through hedged connects, though the connect timeout
// is an hour; each server saw one connection, the bind reached only the
// healthy one, the next login went straight to the healthy one, and
// Close ends the connects still waiting on the black-holed ones (no
// goroutine left).
func TestHedgedConnectBlackholed(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tr := range tlsModes[1:] { // plain: a connect that TCP completes is ready for the bind
		for _, n := range []int{2, 3} {
			t.Run(fmt.Sprintf("%s/%d servers", tr.name, n), func(t *testing.T) {
				var proxies []*faultproxy.Proxy
				var urls []string
				for i := range n {
					p, u := tr.server(t, srv, cs.good)
					if i < n-1 {
						p.SetMode(faultproxy.Blackhole)
					}
					proxies, urls = append(proxies, p), append(urls, u)
				}
				ignore := goleak.IgnoreCurrent()
				a := hedgeAuth(t, srv, tr, cs, urls)
				_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
				require.NoError(t, err, "served by the healthy server")
				// While the connects that lost are still in flight, the
				// next login goes to the healthy server first: it pays no
				// hedge delay and opens nothing to the black-holed ones.
				_, err = a.Authenticate(safetyNet(t), "bob", "bob-password")
				require.NoError(t, err)
				for i, p := range proxies {
					want := int64(1)
					if i == n-1 {
						want = 2
					}
					assert.Equal(t, want, p.Accepted(), "connections to server %d", i)
					if i < n-1 {
						want = 0
					}
					assert.Equal(t, want, p.Binds(), "binds on server %d", i)
				}
				require.NoError(t, a.Close())
				goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("github.com/glauth/ldap.(*Server).Serve.func1"))
				for i, p := range proxies[:n-1] {
					assert.Zero(t, p.Open(), "connection to black-holed server %d closed by Close", i)
				}
			})
		}
	}
}

// A slow first server (it takes the connection and starts its handshake
// only when the test says so): the login is served by the second; once
// the first goes on, the connect that lost completes and its connection
// is closed, with no bind sent on it, and the first server is not marked
// down for being slow.
func TestHedgedConnectSlow(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tr := range tlsModes[1:] {
		t.Run(tr.name, func(t *testing.T) {
			slow, slowURL := tr.server(t, srv, cs.good)
			healthy, healthyURL := tr.server(t, srv, cs.good)
			slow.SetMode(faultproxy.Hold)
			a := hedgeAuth(t, srv, tr, cs, []string{slowURL, healthyURL})
			_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
			require.NoError(t, err)
			require.NoError(t, slow.WaitStalled(safetyNet(t), 1), "the first connect reached the slow server")
			assert.Equal(t, int64(1), healthy.Binds(), "the bind went to the second server")

			slow.SetMode(faultproxy.Pass) // the handshake goes on: the losing connect completes
			require.Eventually(t, func() bool { return slow.Open() == 0 }, time.Minute, 5*time.Millisecond,
				"the connection the losing connect made is closed")
			assert.Equal(t, int64(1), slow.Accepted())
			assert.Equal(t, int64(1), healthy.Accepted())
			assert.Zero(t, slow.Binds(), "no bind on the losing connection")

			// Slowness marked nothing down: the next login starts with
			// the first server again (and, now fast, it serves it).
			_, err = a.Authenticate(safetyNet(t), "bob", "bob-password")
			require.NoError(t, err)
			assert.Equal(t, int64(2), slow.Accepted(), "the next login connected to the first server")
		})
	}
}

// With the hedge delay not reached (a healthy first server and a delay of
// an hour), a login connects to the first server only.
func TestHedgeNotStartedForFastConnect(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tr := range tlsModes {
		t.Run(tr.name, func(t *testing.T) {
			first, firstURL := tr.server(t, srv, cs.good)
			second, secondURL := tr.server(t, srv, cs.good)
			a, _ := poolAuth(t, srv, []string{firstURL, secondURL}, func(c *ldapauth.Config) {
				failoverCfg(c, tr, cs)
				c.ConnectTimeout, c.HedgeDelay = 2*time.Hour, time.Hour
			})
			for _, u := range []string{"alice", "bob"} {
				_, err := a.Authenticate(safetyNet(t), u, u+"-password")
				require.NoError(t, err)
			}
			assert.Equal(t, int64(2), first.Accepted())
			assert.Equal(t, int64(2), first.Binds())
			assert.Zero(t, second.Accepted())
		})
	}
}

// A negative hedge delay other than NoHedge is refused, naming the field;
// NoHedge and the default are accepted.
func TestHedgeDelayValidated(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	for _, d := range []time.Duration{0, -1, 50 * time.Millisecond} {
		cfg, err := ldapauth.LoadConfig(env(srv.Env()))
		require.NoError(t, err)
		cfg.HedgeDelay = d
		a, err := ldapauth.New(cfg)
		require.NoError(t, err, "HedgeDelay %s", d)
		require.NoError(t, a.Close())
	}
	cfg, err := ldapauth.LoadConfig(env(srv.Env()))
	require.NoError(t, err)
	cfg.HedgeDelay = -time.Second
	_, err = ldapauth.New(cfg)
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	assert.Contains(t, err.Error(), "Config.HedgeDelay")
}
