package ds389_test

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/dstest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// What 389-DS 2.3 answers a bind carrying the password policy request
// control (global policy: passwordLockout, passwordMaxFailure 3,
// passwordUnlock off, passwordMustChange), pinned by
// TestPasswordPolicyAnswers:
//
//	case                                   bind result                      control error
//	wrong password, not yet locked         49                               -1 (none)
//	any password, account locked           19 "Exceed password retry limit" 1 accountLocked
//	any password, nsAccountLock: true      53 "Account inactivated"         1 accountLocked
//	right password after an admin reset    0                                2 changeAfterReset
//
// The lock and nsAccountLock are checked before the password: a locked or
// disabled account answers the same whatever password is given, so these
// states say nothing about whether the password was right.

// bindRaw binds dn with the password policy request control and returns the
// result code and the control's error (-1 without one).
func bindRaw(t *testing.T, srv *dstest.Server, dn, password string) (uint16, int8) {
	t.Helper()
	conn := srv.Conn(t, "", "")
	res, err := conn.SimpleBind(&ldap.SimpleBindRequest{Username: dn, Password: password,
		Controls: []ldap.Control{ldap.NewControlBeheraPasswordPolicy()}})
	code := uint16(ldap.LDAPResultSuccess)
	if err != nil {
		var lerr *ldap.Error
		require.ErrorAs(t, err, &lerr)
		code = lerr.ResultCode
	}
	require.NotNil(t, res)
	ctrl, _ := ldap.FindControl(res.Controls, ldap.ControlTypeBeheraPasswordPolicy).(*ldap.ControlBeheraPasswordPolicy)
	if ctrl == nil {
		return code, -1
	}
	return code, ctrl.Error
}

func TestPasswordPolicyAnswers(t *testing.T) {
	srv := dstest.Shared(t)
	t.Run("lockout", func(t *testing.T) {
		uid, dn := tempUser(t, srv)
		for range dstest.MaxFailures {
			code, perr := bindRaw(t, srv, dn, "wrong-password")
			assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), code)
			assert.Equal(t, int8(-1), perr)
		}
		for _, pw := range []string{dstest.Password(uid), "wrong-password"} {
			code, perr := bindRaw(t, srv, dn, pw)
			assert.Equal(t, uint16(ldap.LDAPResultConstraintViolation), code)
			assert.Equal(t, int8(ldap.BeheraAccountLocked), perr)
		}
	})
	t.Run("nsAccountLock", func(t *testing.T) {
		for _, pw := range []string{dstest.Password(dstest.DisabledUser), "wrong-password"} {
			code, perr := bindRaw(t, srv, dstest.UserDN(dstest.DisabledUser), pw)
			assert.Equal(t, uint16(ldap.LDAPResultUnwillingToPerform), code)
			assert.Equal(t, int8(ldap.BeheraAccountLocked), perr)
		}
	})
	t.Run("must change", func(t *testing.T) {
		uid, dn := tempUser(t, srv)
		srv.SetPassword(t, dn, dstest.Password(uid))
		code, perr := bindRaw(t, srv, dn, dstest.Password(uid))
		assert.Equal(t, uint16(ldap.LDAPResultSuccess), code)
		assert.Equal(t, int8(ldap.BeheraChangeAfterReset), perr)
	})
}

// assertAccountState checks a refused login with an account state.
func assertAccountState(t *testing.T, err error, kind error, code uint16) {
	t.Helper()
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a naive caller sees a refused login")
	require.ErrorIs(t, err, kind)
	var acct *ldapauth.AccountError
	require.ErrorAs(t, err, &acct)
	assert.Equal(t, "accountLocked", acct.Code)
	var lerr *ldap.Error
	require.ErrorAs(t, err, &lerr, "the directory's answer is kept")
	assert.Equal(t, code, lerr.ResultCode)
	for _, not := range []error{ldapauth.ErrServiceAccount, ldapauth.ErrUnavailable, ldapauth.ErrConfig, ldapauth.ErrNotPermitted} {
		assert.NotErrorIs(t, err, not)
	}
}

func TestLockout(t *testing.T) {
	srv := dstest.Shared(t)
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			uid, dn := tempUser(t, srv)
			a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
			for i := range dstest.MaxFailures {
				_, err := login(a, uid, "wrong-password")
				require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "wrong password %d", i+1)
				require.NotErrorIs(t, err, ldapauth.ErrAccountLocked, "wrong password %d: not locked yet", i+1)
			}
			// Locked: 19 with accountLocked, for the right password and a
			// wrong one alike (389-DS checks the lock first).
			for _, pw := range []string{dstest.Password(uid), "wrong-password"} {
				u, err := login(a, uid, pw)
				assert.Nil(t, u)
				assertAccountState(t, err, ldapauth.ErrAccountLocked, ldap.LDAPResultConstraintViolation)
				assert.NotErrorIs(t, err, ldapauth.ErrAccountDisabled)
			}
			assert.Nil(t, storetest.User(store, uid))

			srv.Unlock(t, dn)
			_, err := login(a, uid, dstest.Password(uid))
			require.NoError(t, err, "unlocked by the administrator")
		})
	}
}

// TestDisabled: nsAccountLock (FreeIPA's ipa user-disable, dsidm account
// lock), whatever the case of its value.
func TestDisabled(t *testing.T) {
	srv := dstest.Shared(t)
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
			users := []string{dstest.DisabledUser}
			for _, value := range []string{"TRUE", "True"} {
				uid, dn := tempUser(t, srv)
				srv.Disable(t, dn, value)
				users = append(users, uid)
			}
			for _, uid := range users {
				for _, pw := range []string{dstest.Password(uid), "wrong-password"} {
					u, err := login(a, uid, pw)
					assert.Nil(t, u)
					assertAccountState(t, err, ldapauth.ErrAccountDisabled, ldap.LDAPResultUnwillingToPerform)
					assert.NotErrorIs(t, err, ldapauth.ErrAccountLocked)
				}
				assert.Nil(t, storetest.User(store, uid))
			}
		})
	}
}

// TestMustChangePassword: after an administrator sets the password
// (passwordMustChange), the bind succeeds with changeAfterReset; ldapauth
// refuses the login, whoever searches.
func TestMustChangePassword(t *testing.T) {
	srv := dstest.Shared(t)
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			uid, dn := tempUser(t, srv)
			srv.SetPassword(t, dn, dstest.Password(uid))
			a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
			u, err := login(a, uid, dstest.Password(uid))
			assert.Nil(t, u)
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			require.ErrorIs(t, err, ldapauth.ErrPasswordMustChange)
			var acct *ldapauth.AccountError
			require.ErrorAs(t, err, &acct)
			assert.Equal(t, "changeAfterReset", acct.Code)
			assert.Nil(t, storetest.User(store, uid))
		})
	}
}

// TestGraceLogins: a password that expired (passwordExpirationTime in the
// past) with the policy's two grace logins: each succeeds and says how many
// are left; then the expired password is refused as such.
func TestGraceLogins(t *testing.T) {
	srv := dstest.Shared(t)
	uid, dn := tempUser(t, srv)
	srv.Modify(t, dn, "passwordExpirationTime", time.Now().Add(-time.Hour).UTC().Format("20060102150405Z"))
	a, _ := newAuth(t, flagsmithEnv(srv.URL))
	for _, left := range []int{1, 0} {
		u, err := login(a, uid, dstest.Password(uid))
		require.NoError(t, err, "a grace login")
		require.NotNil(t, u.PasswordWarning)
		assert.Equal(t, left, u.PasswordWarning.GraceLogins)
	}
	_, err := login(a, uid, dstest.Password(uid))
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	require.ErrorIs(t, err, ldapauth.ErrPasswordExpired)
	var acct *ldapauth.AccountError
	require.ErrorAs(t, err, &acct)
	assert.Equal(t, "passwordExpired", acct.Code)
}
