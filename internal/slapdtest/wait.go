package slapdtest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// ErrNotYet marks an error from a WaitFor check that means "not yet: ask
// again"; NotYet makes one.
var ErrNotYet = errors.New("not yet")

// NotYet returns an error matching ErrNotYet, saying what the check saw.
func NotYet(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotYet, fmt.Sprintf(format, args...))
}

// WaitFor calls check on the caller's goroutine until it returns nil,
// every 10 ms. An error not matching ErrNotYet fails tb at once with that
// error; after timeout, tb fails with what check last saw. Unlike a
// condition given to require.Eventually, which runs on another goroutine
// where a t.Fatal only stops that goroutine, a broken check shows up as
// its own error, not as a timeout.
func WaitFor(tb testing.TB, timeout time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		switch {
		case err == nil:
			return
		case !errors.Is(err, ErrNotYet):
			tb.Fatalf("slapdtest: %v", err)
		case time.Now().After(deadline):
			tb.Fatalf("slapdtest: after %v, %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitLocked waits until the lock on dn is stored. slapd 2.5 answers the
// bind that reaches the policy's pwdMaxFailure before ppolicy's write of
// pwdAccountLockedTime is visible: under load, a bind with the right
// password just after it can still succeed. This waits for the server's
// state; it asserts nothing about time.
func (s *Server) WaitLocked(tb testing.TB, dn string) {
	tb.Helper()
	admin := s.Admin(tb)
	WaitFor(tb, 30*time.Second, func() error {
		res, err := admin.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(pwdAccountLockedTime=*)", []string{"pwdAccountLockedTime"}, nil))
		switch {
		case err != nil:
			return fmt.Errorf("read the lock of %s: %w", dn, err)
		case len(res.Entries) == 0:
			return NotYet("no lock stored on %s", dn)
		}
		return nil
	})
}
