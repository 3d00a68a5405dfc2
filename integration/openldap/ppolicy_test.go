package openldap_test

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// What slapd 2.5's ppolicy overlay answers (default policy: pwdLockout,
// pwdMaxFailure 3, pwdMustChange), for the account-state work that will
// turn these into typed errors. ldapauth sends no password policy request
// control today, so it sees only the result codes; with the control
// (1.3.6.1.4.1.42.2.27.8.5.1) the bind response also carries:
//
//	case                               bind result            control error        search after the bind
//	wrong password, not yet locked     49, no diagnostic      -1 (none)            -
//	3rd wrong password (locks)         49, no diagnostic      -1 (none)            -
//	right password, account locked     49, no diagnostic      1 "Account locked"   -
//	right password, pwdReset TRUE      0 (success)            2 "Password must     50 insufficientAccessRights,
//	                                                            be changed"        "Operations are restricted to
//	                                                                               bind/unbind/abandon/StartTLS/
//	                                                                               modify password"
//
// The lock is stored shortly after the answer to the 3rd wrong password, not
// before it (see waitLocked). TestPasswordPolicyAnswers pins the table.

// waitLocked waits until the lock on dn is stored. slapd 2.5 answers the
// bind that reaches pwdMaxFailure before ppolicy's write of
// pwdAccountLockedTime is visible: under load, a bind with the right
// password just after it can still succeed. This waits for the server's
// state; it asserts nothing about time.
func waitLocked(t *testing.T, srv *slapdtest.Server, dn string) {
	t.Helper()
	admin := srv.Admin(t)
	require.Eventually(t, func() bool {
		res, err := admin.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(pwdAccountLockedTime=*)", []string{"pwdAccountLockedTime"}, nil))
		return err == nil && len(res.Entries) == 1
	}, 30*time.Second, 5*time.Millisecond, "slapd never stored the lock of %s", dn)
}

// TestLockout runs on its own server: it locks LockoutUser.
func TestLockout(t *testing.T) {
	srv := slapdtest.Start(t)
	uid := slapdtest.LockoutUser
	dn := slapdtest.UserDN(uid)

	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
			for i := range slapdtest.MaxFailures {
				_, err := login(a, uid, "wrong-password")
				require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "wrong password %d", i+1)
			}
			waitLocked(t, srv, dn)

			// Locked: the right password is refused with the same 49 as a
			// wrong one. Telling them apart needs the policy control
			// ("Account locked"), which is the account-state work's job.
			u, err := login(a, uid, slapdtest.Password(uid))
			assert.Nil(t, u)
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
			var lerr *ldap.Error
			require.ErrorAs(t, err, &lerr)
			assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), lerr.ResultCode)
			assert.Nil(t, store.User(uid))

			srv.Unlock(t, dn)
			_, err = login(a, uid, slapdtest.Password(uid))
			require.NoError(t, err, "unlocked by the administrator")
		})
	}
}

// TestMustChangePassword runs on its own server: it sets pwdReset on
// ResetUser. After an administrator's reset the user's bind succeeds and
// every other operation is refused until the password is changed.
//
// KNOWN GAPS, pinned here so that the account-state work has to flip them
// (it should make both refuse the login with an error matching
// ErrInvalidCredentials, typed as "must change password"):
//   - searching as the user, the refused search comes back as a generic
//     search error wrapping 50, matching no ldapauth sentinel;
//   - searching as the service account, nothing is refused: the user logs
//     in with the password the administrator set, never changing it.
//
// Both follow from ldapauth not asking for the password policy control on
// the user's bind; django-python3-ldap behaves the same.
func TestMustChangePassword(t *testing.T) {
	srv := slapdtest.Start(t)
	uid := slapdtest.ResetUser
	dn := slapdtest.UserDN(uid)

	t.Run("as the user", func(t *testing.T) {
		srv.ForcePasswordReset(t, dn)
		a, store := newAuth(t, flagsmithEnv(srv.URL))
		u, err := login(a, uid, slapdtest.Password(uid))
		assert.Nil(t, u)
		require.Error(t, err, "the login is refused")
		var lerr *ldap.Error
		require.ErrorAs(t, err, &lerr, "the directory's answer is kept")
		assert.Equal(t, uint16(ldap.LDAPResultInsufficientAccessRights), lerr.ResultCode)
		for _, sentinel := range []error{ldapauth.ErrServiceAccount, ldapauth.ErrUnavailable, ldapauth.ErrConfig, ldapauth.ErrNotPermitted} {
			assert.NotErrorIs(t, err, sentinel)
		}
		// KNOWN GAP: should match ErrInvalidCredentials.
		assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "known gap: if this fails, the gap is closed; update this test")
		assert.Nil(t, store.User(uid))
	})

	t.Run("as the service account", func(t *testing.T) {
		srv.ForcePasswordReset(t, dn)
		a, _ := newAuth(t, flagsmithEnv(srv.URL, serviceAccount...))
		_, err := login(a, uid, slapdtest.Password(uid))
		// KNOWN GAP: should be refused.
		assert.NoError(t, err, "known gap: if this fails, the gap is closed; update this test")
	})
}

// TestPasswordPolicyAnswers pins the server's answers in the table above
// with the raw client, asking for the password policy control.
func TestPasswordPolicyAnswers(t *testing.T) {
	srv := slapdtest.Start(t)
	bind := func(t *testing.T, dn, password string) (uint16, *ldap.ControlBeheraPasswordPolicy, *ldap.Conn) {
		t.Helper()
		conn := srv.Dial(t)
		res, err := conn.SimpleBind(&ldap.SimpleBindRequest{
			Username: dn, Password: password,
			Controls: []ldap.Control{ldap.NewControlBeheraPasswordPolicy()},
		})
		code := uint16(ldap.LDAPResultSuccess)
		if err != nil {
			var lerr *ldap.Error
			require.ErrorAs(t, err, &lerr)
			code = lerr.ResultCode
		}
		require.NotNil(t, res, "a bind response")
		ctrl, ok := ldap.FindControl(res.Controls, ldap.ControlTypeBeheraPasswordPolicy).(*ldap.ControlBeheraPasswordPolicy)
		require.True(t, ok, "the password policy response control")
		return code, ctrl, conn
	}

	t.Run("lockout", func(t *testing.T) {
		dn := slapdtest.UserDN(slapdtest.LockoutUser)
		for i := range slapdtest.MaxFailures {
			code, ctrl, _ := bind(t, dn, "wrong-password")
			assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), code)
			assert.Equal(t, int8(-1), ctrl.Error, "wrong password %d", i+1)
		}
		waitLocked(t, srv, dn)
		code, ctrl, _ := bind(t, dn, slapdtest.Password(slapdtest.LockoutUser))
		assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), code)
		assert.Equal(t, int8(ldap.BeheraAccountLocked), ctrl.Error)
	})
	t.Run("must change", func(t *testing.T) {
		dn := slapdtest.UserDN(slapdtest.ResetUser)
		srv.ForcePasswordReset(t, dn)
		code, ctrl, conn := bind(t, dn, slapdtest.Password(slapdtest.ResetUser))
		assert.Equal(t, uint16(ldap.LDAPResultSuccess), code)
		assert.Equal(t, int8(ldap.BeheraChangeAfterReset), ctrl.Error)
		_, err := conn.Search(ldap.NewSearchRequest(slapdtest.PeopleDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			2, 0, false, "(uid="+slapdtest.ResetUser+")", []string{"uid"}, nil))
		var lerr *ldap.Error
		require.ErrorAs(t, err, &lerr)
		assert.Equal(t, uint16(ldap.LDAPResultInsufficientAccessRights), lerr.ResultCode)
	})
}
