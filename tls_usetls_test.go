package ldapauth_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// LDAP_AUTH_USE_TLS=True with an ldaps:// URL, as existing Flagsmith env
// files have it: redundant, so it starts and logs in unchanged, StartTLS is
// not attempted on the ldaps:// server, and New notes it once at Info. With
// ldap:// and ldaps:// URLs mixed, UseTLS applies to the ldap:// ones.
func TestUseTLSWithLDAPS(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	rightCA := filepath.Join(t.TempDir(), "right.pem")
	require.NoError(t, os.WriteFile(rightCA, srv.CACertPEM(), 0o644))
	const note = "LDAP_AUTH_USE_TLS applies to ldap:// servers only"

	auth := func(t *testing.T, url, ca string) (*ldapauth.Authenticator, *bytes.Buffer) {
		vars := srv.Env()
		vars["LDAP_AUTH_URL"] = url
		vars["LDAP_AUTH_USE_TLS"] = "True"
		vars["LDAP_AUTH_TLS_CA_FILE"] = ca
		cfg, err := ldapauth.LoadConfig(env(vars))
		require.NoError(t, err, "redundant, not wrong")
		var logs bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		a, err := ldapauth.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		return a, &logs
	}

	t.Run("ldaps only", func(t *testing.T) {
		a, logs := auth(t, srv.LDAPSURL(), rightCA)
		for range 3 {
			u, err := a.Authenticate(context.Background(), "alice", "alice-password")
			require.NoError(t, err, "StartTLS is not sent on a TLS connection")
			assert.Equal(t, "alice", u.Username)
		}
		assert.Equal(t, 1, strings.Count(logs.String(), note), "noted once, at New:\n%s", logs)
		assert.Contains(t, logs.String(), "level=INFO")
		assert.Contains(t, logs.String(), srv.LDAPSURL())
	})
	t.Run("ldaps first, then ldap", func(t *testing.T) {
		a, _ := auth(t, srv.LDAPSURL()+" "+srv.URL(), rightCA)
		_, err := a.Authenticate(context.Background(), "alice", "alice-password")
		require.NoError(t, err)
	})
	t.Run("ldap first: StartTLS there", func(t *testing.T) {
		a, logs := auth(t, srv.URL()+" "+srv.LDAPSURL(), rightCA)
		_, err := a.Authenticate(context.Background(), "alice", "alice-password")
		require.NoError(t, err)
		assert.Equal(t, 1, strings.Count(logs.String(), note))

		// With a CA that did not sign the server's certificate, the ldap://
		// server fails certificate verification: TLS was started there.
		wrong, _ := auth(t, srv.URL()+" "+srv.LDAPSURL(), writeCA(t))
		_, err = wrong.Authenticate(context.Background(), "alice", "alice-password")
		var tlsErr *ldapauth.TLSError
		require.ErrorAs(t, err, &tlsErr)
		assert.Equal(t, srv.URL(), tlsErr.URL, "StartTLS on the ldap:// server")
	})
	t.Run("ldap only: no note", func(t *testing.T) {
		_, logs := auth(t, srv.URL(), rightCA)
		assert.NotContains(t, logs.String(), note)
	})
}
