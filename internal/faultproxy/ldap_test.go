package faultproxy_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/internal/testcert"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

func tlsFront(t *testing.T) (*ldaptest.Server, *tls.Config, tls.Certificate) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	ca, err := testcert.NewCA("front CA")
	require.NoError(t, err)
	pair, err := ca.Issue("127.0.0.1")
	require.NoError(t, err)
	cert, err := pair.TLSCertificate()
	require.NoError(t, err)
	return srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, cert
}

// The LDAPS front terminates TLS with its certificate and forwards the
// plain LDAP inside, counting the binds; a client that refuses the
// certificate sends nothing.
func TestServeLDAPS(t *testing.T) {
	srv, trust, cert := tlsFront(t)
	p := faultproxy.Start(t, hostOf(srv.URL()))
	p.ServeLDAPS(cert)

	l, err := ldap.DialURL("ldaps://"+p.Addr(), ldap.DialWithTLSConfig(trust))
	require.NoError(t, err)
	require.NoError(t, l.Bind(srv.UserDN("alice"), "alice-password"))
	_, err = l.Search(ldap.NewSearchRequest(srv.BaseDN(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(uid=alice)", nil, nil))
	require.NoError(t, err)
	l.Close()
	assert.Equal(t, int64(1), p.Binds())
	assert.Equal(t, int64(1), p.Searches())

	_, err = ldap.DialURL("ldaps://"+p.Addr(), ldap.DialWithTLSConfig(&tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}))
	require.Error(t, err, "the system roots do not trust the front's CA")
	assert.Equal(t, int64(1), p.Binds())
}

// The StartTLS front answers StartTLS as told: success, then TLS; or a
// refusal with the code given.
func TestServeStartTLS(t *testing.T) {
	srv, trust, cert := tlsFront(t)
	p := faultproxy.Start(t, hostOf(srv.URL()))
	p.ServeStartTLS(cert, ldap.LDAPResultSuccess)
	l, err := ldap.DialURL(p.URL())
	require.NoError(t, err)
	require.NoError(t, l.StartTLS(trust))
	require.NoError(t, l.Bind(srv.UserDN("alice"), "alice-password"))
	l.Close()
	assert.Equal(t, int64(1), p.Binds())

	p.ServeStartTLS(cert, ldap.LDAPResultBusy)
	l, err = ldap.DialURL(p.URL())
	require.NoError(t, err)
	defer l.Close()
	err = l.StartTLS(trust)
	assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultBusy), "%v", err)
}

// A bind sent to a hung server is counted: it reached the server, which
// never answered.
func TestBlackholeCountsBinds(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	p := faultproxy.Start(t, hostOf(srv.URL()))
	p.SetMode(faultproxy.Blackhole)
	l, err := ldap.DialURL(p.URL())
	require.NoError(t, err)
	defer l.Close()
	l.SetTimeout(100 * time.Millisecond)
	require.Error(t, l.Bind(srv.UserDN("alice"), "alice-password"))
	require.Eventually(t, func() bool { return p.Binds() == 1 }, time.Minute, time.Millisecond)
}

func hostOf(url string) string { return url[len("ldap://"):] }
