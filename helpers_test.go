package ldapauth_test

import (
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
