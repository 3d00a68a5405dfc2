package ldapauth_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// Against a real OpenLDAP, in each transport (TLS end to end, through a
// proxy that only forwards bytes): a hung first server costs at most the
// first login (plain only), the others go to the second server; the
// prober's root DSE read, answered by slapd, brings the first back once
// it answers, and the logins return to it.
func TestFailoverOpenLDAP(t *testing.T) {
	s := slapdtest.Start(t)
	for _, tt := range []struct {
		name   string
		url    string
		useTLS bool
	}{
		{"plain", s.URL, false},
		{"StartTLS", s.URL, true},
		{"LDAPS", s.LDAPSURL, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			scheme, hp, _ := strings.Cut(tt.url, "://")
			first := faultproxy.Start(t, hp)
			second := faultproxy.Start(t, hp)
			first.SetMode(faultproxy.Blackhole)
			a, err := ldapauth.New(&ldapauth.Config{
				URLs:       []string{scheme + "://" + first.Addr(), scheme + "://" + second.Addr()},
				SearchBase: slapdtest.PeopleDN, UseTLS: tt.useTLS, TLSConfig: s.TLSConfig(),
				ConnectTimeout: time.Second, ReceiveTimeout: time.Second, PoolSize: -1,
			})
			require.NoError(t, err)
			defer a.Close()
			clock := &fakeClock{now: time.Unix(1_000_000, 0)}
			ldapauth.SetClock(a, clock.Now)

			failed := 0
			for i := range 6 {
				if i == 3 {
					clock.Advance(time.Minute)
				}
				if _, err := a.Authenticate(safetyNet(t), "alice", slapdtest.Password("alice")); err != nil {
					require.ErrorIs(t, err, ldapauth.ErrUnavailable)
					failed++
				}
			}
			assert.Equal(t, map[bool]int{true: 1, false: 0}[scheme == "ldap" && !tt.useTLS], failed, "failed logins")
			assert.Equal(t, int64(6-failed), second.Accepted(), "the second served the rest, one connection each")
			assert.Equal(t, int64(1), first.Accepted(), "no login went to the hung server after the first")

			first.SetMode(faultproxy.Pass)
			ldapauth.ProbeNow(a)
			assert.Equal(t, int64(2), first.Accepted(), "probed")
			_, err = a.Authenticate(safetyNet(t), "bob", slapdtest.Password("bob"))
			require.NoError(t, err)
			assert.Equal(t, int64(3), first.Accepted(), "back, and used")
		})
	}
}

// A certificate OpenLDAP presents that the client does not trust gives the
// same error with StartTLS and LDAPS: a *TLSError holding the verification
// error, never ErrUnavailable.
func TestCertificateFailureOpenLDAP(t *testing.T) {
	s := slapdtest.Start(t)
	wrong := x509.NewCertPool()
	require.True(t, wrong.AppendCertsFromPEM(s.WrongCAPEM))
	for _, tt := range []struct {
		name   string
		url    string
		useTLS bool
	}{{"StartTLS", s.URL, true}, {"LDAPS", s.LDAPSURL, false}} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ldapauth.New(&ldapauth.Config{URLs: []string{tt.url}, SearchBase: slapdtest.PeopleDN, UseTLS: tt.useTLS,
				TLSConfig: &tls.Config{RootCAs: wrong, MinVersion: tls.VersionTLS12}, ConnectTimeout: time.Second, ReceiveTimeout: time.Second})
			require.NoError(t, err)
			defer a.Close()
			_, err = a.Authenticate(safetyNet(t), "alice", slapdtest.Password("alice"))
			var tlsErr *ldapauth.TLSError
			require.ErrorAs(t, err, &tlsErr)
			var verr *tls.CertificateVerificationError
			assert.ErrorAs(t, err, &verr)
			var unknown x509.UnknownAuthorityError
			assert.ErrorAs(t, err, &unknown)
			assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
		})
	}
}
