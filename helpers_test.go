package ldapauth_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/testcert"
)

// writeCA writes a fresh CA certificate to a temporary file and returns
// its path.
func writeCA(t *testing.T) string {
	t.Helper()
	ca, err := testcert.NewCA("ldapauth test CA")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(path, ca.CertPEM, 0o644))
	return path
}

// closedURL returns an ldap:// URL on 127.0.0.1 where nothing listens, held
// for the test: the port is the local end of a loopback connection that
// stays open until the test ends, bound and never listening, so a dial to
// it is refused and no listener can take it meanwhile (a port reserved and
// closed again could be).
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	held, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { held.Close() })
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	return "ldap://" + held.LocalAddr().String()
}
