package ldapauth_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// TestMain stops the slapd servers the tests started and fails the run if a
// goroutine outlives the tests: every Authenticator is closed, and neither
// a login nor Close may leave one behind.
func TestMain(m *testing.M) {
	code := slapdtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
