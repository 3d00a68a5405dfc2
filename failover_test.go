package ldapauth_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
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
	"github.com/go-ldapauth/ldapauth/internal/testcert"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// certs are the certificates of the failover tests: a CA the client
// trusts and, for 127.0.0.1, one good certificate and one per kind of
// verification failure.
type certs struct {
	pool                              *x509.CertPool
	good, wrongCA, expired, wrongName tls.Certificate
}

func newCerts(t *testing.T) *certs {
	t.Helper()
	trusted, err := testcert.NewCA("trusted CA")
	require.NoError(t, err)
	other, err := testcert.NewCA("some other CA")
	require.NoError(t, err)
	issue := func(p *testcert.Pair, err error) tls.Certificate {
		require.NoError(t, err)
		c, err := p.TLSCertificate()
		require.NoError(t, err)
		return c
	}
	return &certs{
		pool:      trusted.Pool(),
		good:      issue(trusted.Issue("127.0.0.1", "localhost")),
		wrongCA:   issue(other.Issue("127.0.0.1", "localhost")),
		expired:   issue(trusted.IssueValid(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "127.0.0.1")),
		wrongName: issue(trusted.Issue("ldap.invalid")),
	}
}

// transport is how the client reaches a server: plain LDAP, StartTLS or
// LDAPS. A TLS transport is the proxy's own TLS in front of the plain
// test directory, so the proxy reads (and counts) the requests inside.
type transport struct {
	name     string
	startTLS bool
	ldaps    bool
}

var tlsModes = []transport{{name: "plain"}, {name: "StartTLS", startTLS: true}, {name: "LDAPS", ldaps: true}}

// server starts a proxy to srv's plain port serving tr with cert, and
// returns it with its URL.
func (tr transport) server(t *testing.T, srv *ldaptest.Server, cert tls.Certificate) (*faultproxy.Proxy, string) {
	p := faultproxy.Start(t, hostPort(srv.URL()))
	switch {
	case tr.ldaps:
		p.ServeLDAPS(cert)
	case tr.startTLS:
		p.ServeStartTLS(cert, ldap.LDAPResultSuccess)
	}
	return p, tr.url(p)
}

func (tr transport) scheme() string {
	if tr.ldaps {
		return "ldaps"
	}
	return "ldap"
}

// fault is what is wrong with the servers before the last, healthy one.
type fault struct {
	name string
	// cert is the certificate the faulty servers present; nil: a good one.
	cert func(*certs) tls.Certificate
	// set applies the fault to a started proxy; nil: none.
	set func(*faultproxy.Proxy)
	// refused: nothing listens (no proxy).
	refused bool
	// failed is how many logins fail with plain LDAP and n servers, where
	// the fault only shows after the connect: a server that accepts and
	// never answers is found by the bind's receive timeout, and the bind
	// is not sent again (one failed login per such server); one that
	// accepts and closes is found when the bind is lost, which is sent
	// again once per login (the retry rule), so the first login fails
	// only when two such servers come first. With TLS, the handshake
	// finds both faults within the connect timeout.
	failed func(n int) int
	// servesLogins: the server is slow, not down, and keeps serving.
	servesLogins bool
}

var failoverFaults = []fault{
	{name: "hung", set: func(p *faultproxy.Proxy) { p.SetMode(faultproxy.Blackhole) }, failed: func(n int) int { return n - 1 }},
	{name: "refused", refused: true},
	{name: "accepts and closes", set: func(p *faultproxy.Proxy) { p.SetMode(faultproxy.Refuse) }, failed: func(n int) int { return max(0, n-2) }},
	{name: "slow", set: func(p *faultproxy.Proxy) { p.SetDelay(20 * time.Millisecond) }, servesLogins: true},
	{name: "wrong CA", cert: func(c *certs) tls.Certificate { return c.wrongCA }},
	{name: "expired certificate", cert: func(c *certs) tls.Certificate { return c.expired }},
	{name: "wrong name", cert: func(c *certs) tls.Certificate { return c.wrongName }},
}

// failoverAuth is poolAuth with tr's settings, trusting cs, logging into
// logs.
func failoverAuth(t *testing.T, srv *ldaptest.Server, tr transport, cs *certs, urls []string, logs *syncBuffer) (*ldapauth.Authenticator, *fakeClock) {
	return poolAuth(t, srv, urls, func(c *ldapauth.Config) {
		c.PoolSize = -1 // every login dials: the servers' order decides each one
		c.UseTLS = tr.startTLS
		c.TLSConfig = &tls.Config{RootCAs: cs.pool, MinVersion: tls.VersionTLS12}
		if logs != nil {
			c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	})
}

// syncBuffer is a bytes.Buffer that the prober's goroutine and the test
// may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every fault, in every transport, with two and three servers (all but
// the last one faulty): logins fail over to the healthy server; no login
// fails after the first one to meet each faulty server (none at all where
// the fault shows before the bind); no bind ever reaches a server whose
// certificate failed, or a hung one after its first; and while the prober
// checks the faulty servers in the background, the logins keep away from
// them.
func TestFailoverMatrix(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tr := range tlsModes {
		for _, f := range failoverFaults {
			if f.cert != nil && !tr.ldaps && !tr.startTLS {
				continue // no certificate without TLS
			}
			for _, n := range []int{2, 3} {
				t.Run(fmt.Sprintf("%s/%s/%d servers", tr.name, f.name, n), func(t *testing.T) {
					var urls []string
					var faulty []*faultproxy.Proxy
					for range n - 1 {
						if f.refused {
							urls = append(urls, tr.scheme()+"://"+hostPort(refusingURL(t)))
							continue
						}
						cert := cs.good
						if f.cert != nil {
							cert = f.cert(cs)
						}
						p, url := tr.server(t, srv, cert)
						if f.set != nil {
							f.set(p)
						}
						faulty, urls = append(faulty, p), append(urls, url)
					}
					healthy, url := tr.server(t, srv, cs.good)
					urls = append(urls, url)
					logs := &syncBuffer{}
					a, clock := failoverAuth(t, srv, tr, cs, urls, logs)

					wantFailed := 0
					if f.failed != nil && !tr.startTLS && !tr.ldaps {
						wantFailed = f.failed(n)
					}
					failed := 0
					users := []string{"alice", "bob", "carol"}
					for i := range 12 {
						probe := i == 4 || i == 8
						if probe {
							// Time passes: the faulty servers' back-off is
							// over, yet this login keeps away from them;
							// the prober checks them after it.
							clock.Advance(time.Minute)
						}
						name := users[i%len(users)]
						u, err := a.Authenticate(safetyNet(t), name, name+"-password")
						if probe {
							ldapauth.ProbeNow(a)
						}
						if err != nil {
							require.ErrorIs(t, err, ldapauth.ErrUnavailable, "login %d", i)
							t.Logf("login %d: %v", i, err)
							failed++
							continue
						}
						assert.Equal(t, name, u.Username)
					}
					assert.Equal(t, wantFailed, failed, "failed logins")

					var binds, accepted int64
					for _, p := range faulty {
						binds += p.Binds()
						accepted += p.Accepted()
					}
					switch {
					case f.servesLogins:
						assert.Equal(t, int64(12), binds, "the slow server served every login")
						assert.Zero(t, healthy.Accepted(), "no failover from a slow server")
					case f.name == "hung" && wantFailed > 0:
						assert.Equal(t, int64(wantFailed), binds, "one bind per hung server, never resent")
					case wantFailed > 0:
						assert.LessOrEqual(t, binds, int64(2), "the bind was sent at most twice")
					default:
						assert.Zero(t, binds, "no bind reached a faulty server")
					}
					if !f.servesLogins {
						if !f.refused {
							assert.Positive(t, accepted, "the faulty servers were tried")
						}
						assert.Equal(t, int64(12-wantFailed), healthy.Binds(), "the healthy server served the rest")
					}
					if f.cert != nil {
						for _, p := range faulty {
							assert.Contains(t, logs.String(), `"level":"ERROR","msg":"ldapauth: TLS failed; server marked down, failed over to another","url":"`+tr.url(p)+`"`)
						}
					}
				})
			}
		}
	}
}

// refusingURL returns an ldap:// URL on 127.0.0.1 where nothing listens:
// a connect is refused.
func refusingURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "ldap://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	return url
}

// url is the URL tr.server gives p.
func (tr transport) url(p *faultproxy.Proxy) string { return tr.scheme() + "://" + p.Addr() }

// With every server failing certificate verification the login fails
// with the TLS error: a *TLSError holding the verification error, the same
// for StartTLS and LDAPS, never ErrUnavailable; no bind is sent.
func TestCertificateFailureOnEveryServer(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tr := range tlsModes[1:] {
		for _, f := range failoverFaults {
			if f.cert == nil {
				continue
			}
			for _, n := range []int{1, 2} {
				t.Run(fmt.Sprintf("%s/%s/%d servers", tr.name, f.name, n), func(t *testing.T) {
					var urls []string
					var ps []*faultproxy.Proxy
					for range n {
						p, url := tr.server(t, srv, f.cert(cs))
						ps, urls = append(ps, p), append(urls, url)
					}
					a, _ := failoverAuth(t, srv, tr, cs, urls, nil)
					_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
					var tlsErr *ldapauth.TLSError
					require.ErrorAs(t, err, &tlsErr)
					var verr *tls.CertificateVerificationError
					assert.ErrorAs(t, err, &verr, "the verification error, in either mode")
					assert.NotErrorIs(t, err, ldapauth.ErrUnavailable, "a certificate failure is not an outage")
					assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
					assert.Equal(t, 1, strings.Count(err.Error(), "ldapauth:"), err.Error())
					for _, p := range ps {
						assert.Zero(t, p.Binds(), "no bind sent")
						assert.Equal(t, int64(1), p.Accepted(), "each server tried once")
					}
				})
			}
		}
	}
}

// A StartTLS answered busy (51) or unavailable (52) marks the server down
// and the next serves the login; alone, it is ErrUnavailable. Any other
// refusal is a TLS error (*TLSError), which also moves on to the next
// server and alone is never ErrUnavailable. Never a fall-back to plain
// text: no bind reaches the refusing server.
func TestStartTLSRefused(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tt := range []struct {
		name      string
		result    int
		transient bool
	}{
		{"busy", ldap.LDAPResultBusy, true},
		{"unavailable", ldap.LDAPResultUnavailable, true},
		{"protocol error", ldap.LDAPResultProtocolError, false},
		{"unwilling to perform", ldap.LDAPResultUnwillingToPerform, false},
	} {
		refusing := func(t *testing.T) (*faultproxy.Proxy, string) {
			p := faultproxy.Start(t, hostPort(srv.URL()))
			p.ServeStartTLS(cs.good, tt.result)
			return p, p.URL()
		}
		tr := tlsModes[1]
		t.Run(tt.name+"/failover", func(t *testing.T) {
			first, url := refusing(t)
			second, url2 := tr.server(t, srv, cs.good)
			a, clock := failoverAuth(t, srv, tr, cs, []string{url, url2}, nil)
			login(t, a, "alice")
			login(t, a, "bob")
			assert.Equal(t, int64(1), first.Accepted(), "tried once, then marked down")

			clock.Advance(time.Minute)
			ldapauth.ProbeNow(a)
			assert.Equal(t, int64(2), first.Accepted(), "probed")
			login(t, a, "carol")
			assert.Equal(t, int64(2), first.Accepted(), "the probe's StartTLS was refused too: still down")
			assert.Zero(t, first.Binds(), "no bind in plain text")
			assert.Equal(t, int64(3), second.Binds())
		})
		t.Run(tt.name+"/alone", func(t *testing.T) {
			first, url := refusing(t)
			a, _ := failoverAuth(t, srv, tr, cs, []string{url}, nil)
			_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
			var tlsErr *ldapauth.TLSError
			if tt.transient {
				require.ErrorIs(t, err, ldapauth.ErrUnavailable)
				assert.NotErrorAs(t, err, &tlsErr)
				assert.True(t, ldap.IsErrorWithCode(err, uint16(tt.result)), "the server's answer: %v", err)
			} else {
				require.ErrorAs(t, err, &tlsErr)
				assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
			}
			assert.Zero(t, first.Binds(), "no bind in plain text")
		})
	}
}

// A server marked down gets no login, however long ago it failed, until
// the prober finds it answering: probed in the background when its
// back-off is over (1 s, doubling), up at its first answer, and then the
// logins return to it, the first server of LDAP_AUTH_URL.
func TestProberReturnsServer(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	first := faultproxy.Start(t, hostPort(srv.URL()))
	second := faultproxy.Start(t, hostPort(srv.URL()))
	first.SetMode(faultproxy.Refuse)
	a, clock := poolAuth(t, srv, []string{first.URL(), second.URL()})

	login(t, a, "alice")
	assert.Equal(t, int64(1), first.Accepted(), "tried first")
	assert.Equal(t, int64(1), second.Binds())

	clock.Advance(time.Hour)
	login(t, a, "bob")
	assert.Equal(t, int64(1), first.Accepted(), "a login never tries a server marked down while another is up")

	ldapauth.ProbeNow(a)
	assert.Equal(t, int64(2), first.Accepted(), "probed once its back-off was over")
	ldapauth.ProbeNow(a)
	assert.Equal(t, int64(2), first.Accepted(), "not again before its back-off (now 2 s) is over")
	clock.Advance(1900 * time.Millisecond)
	ldapauth.ProbeNow(a)
	assert.Equal(t, int64(2), first.Accepted(), "the back-off doubled")
	clock.Advance(100 * time.Millisecond)
	ldapauth.ProbeNow(a)
	assert.Equal(t, int64(3), first.Accepted())

	first.SetMode(faultproxy.Pass)
	clock.Advance(4 * time.Second)
	ldapauth.ProbeNow(a)
	assert.Equal(t, int64(4), first.Accepted(), "probed, and answered")
	assert.Zero(t, first.Binds(), "a probe never binds")
	assert.Equal(t, int64(1), first.Searches(), "a probe reads the root DSE")

	login(t, a, "carol")
	assert.Equal(t, int64(1), first.Binds(), "back, and used again")
	login(t, a, "alice")
	assert.Equal(t, int64(2), first.Binds(), "its connection is pooled")
	assert.Equal(t, int64(5), first.Accepted())
	assert.Equal(t, int64(2), second.Binds(), "no more logins on the second")
}

// The target of the failover: with one of two servers hung, logins from
// many goroutines while the prober runs on the real clock: no login fails
// after the first one, and no bind reaches the hung server after the
// first login's.
func TestHungServerConcurrentLogins(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	for _, mode := range accountModes {
		t.Run(mode.name, func(t *testing.T) {
			hung := faultproxy.Start(t, hostPort(srv.URL()))
			healthy := faultproxy.Start(t, hostPort(srv.URL()))
			hung.SetMode(faultproxy.Blackhole)
			a, _ := poolAuth(t, srv, []string{hung.URL(), healthy.URL()}, append(mode.opts(srv), func(c *ldapauth.Config) {
				c.PoolSize = -1 // every login dials: the servers' order decides each one
			})...)
			ldapauth.SetClock(a, time.Now) // the prober probes on its own
			_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
			require.ErrorIs(t, err, ldapauth.ErrUnavailable, "the first login meets the hung server")
			bindsAfterFirst := hung.Binds()

			var failed atomic.Int64
			var wg sync.WaitGroup
			// Until the prober has probed the hung server twice, so logins
			// ran while its back-off was over, before and during a probe.
			var logins atomic.Int64
			for w := range 8 {
				wg.Go(func() {
					for i := 0; hung.Searches() < 2 && logins.Add(1) < 100_000; i++ {
						name := []string{"alice", "bob", "carol"}[(w+i)%3]
						if _, err := a.Authenticate(safetyNet(t), name, name+"-password"); err != nil {
							t.Errorf("login %d/%d: %v", w, i, err)
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			assert.Zero(t, failed.Load(), "failed logins after the first")
			assert.Equal(t, bindsAfterFirst, hung.Binds(), "no bind reached the hung server after the first login")
		})
	}
}

// Close stops the probes, even in the middle of a probe of a hung server,
// and leaves no goroutine behind.
func TestCloseStopsProber(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	hung := faultproxy.Start(t, hostPort(srv.URL()))
	healthy := faultproxy.Start(t, hostPort(srv.URL()))
	hung.SetMode(faultproxy.Refuse)
	ignore := goleak.IgnoreCurrent()
	a, _ := poolAuth(t, srv, []string{hung.URL(), healthy.URL()}, func(c *ldapauth.Config) {
		c.ConnectTimeout, c.ReceiveTimeout = time.Hour, time.Hour // only Close can end the probe
	})
	ldapauth.SetClock(a, time.Now) // logins start probes, after the 1 s back-off
	login(t, a, "alice")           // marks the first server down

	hung.SetMode(faultproxy.Blackhole)
	require.Eventually(t, func() bool {
		_, err := a.Authenticate(safetyNet(t), "bob", "bob-password") // served by the second
		return err == nil && hung.Searches() == 1
	}, time.Minute, 10*time.Millisecond, "a login started the probe, whose root DSE read reached the hung server")
	require.NoError(t, a.Close())
	goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("github.com/glauth/ldap.(*Server).Serve.func1"))
	assert.Zero(t, hung.Binds())
}

// The logins in flight when a server hangs all fail with it, but count as
// one failure: the server is probed again after 1 s, not after a back-off
// stretched by each of them.
func TestConcurrentFailuresCountOnce(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	hung := faultproxy.Start(t, hostPort(srv.URL()))
	healthy := faultproxy.Start(t, hostPort(srv.URL()))
	hung.SetMode(faultproxy.Blackhole)
	a, clock := poolAuth(t, srv, []string{hung.URL(), healthy.URL()}, func(c *ldapauth.Config) { c.PoolSize = -1 })
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _ = a.Authenticate(safetyNet(t), "alice", "alice-password") })
	}
	wg.Wait()
	require.Positive(t, hung.Binds(), "logins met the hung server")

	clock.Advance(time.Second)
	ldapauth.ProbeNow(a)
	assert.Equal(t, int64(1), hung.Searches(), "probed after 1 s, however many logins failed")
}
