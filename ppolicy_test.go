package ldapauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

func slapdAuth(t *testing.T, srv *slapdtest.Server) *ldapauth.Authenticator {
	t.Helper()
	cfg, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": srv.URL}))
	require.NoError(t, err)
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

// The user's bind carries the password policy control; OpenLDAP's answer
// becomes a typed account state that is still an invalid-credentials error.
func TestPasswordPolicyOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	a := slapdAuth(t, srv)
	ctx := context.Background()

	t.Run("locked", func(t *testing.T) {
		user := slapdtest.LockoutUser
		for i := 0; i < slapdtest.MaxFailures; i++ {
			_, err := a.Authenticate(ctx, user, "wrong")
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			require.NotErrorIs(t, err, ldapauth.ErrAccountLocked, "attempt %d: not locked yet", i+1)
		}
		_, err := a.Authenticate(ctx, user, slapdtest.Password(user))
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		require.ErrorIs(t, err, ldapauth.ErrAccountLocked)
		var acct *ldapauth.AccountError
		require.ErrorAs(t, err, &acct)
		assert.Equal(t, "accountLocked", acct.Code)

		srv.Unlock(t, slapdtest.UserDN(user))
		u, err := a.Authenticate(ctx, user, slapdtest.Password(user))
		require.NoError(t, err)
		assert.Nil(t, u.PasswordWarning)
	})

	t.Run("must change after reset", func(t *testing.T) {
		user := slapdtest.ResetUser
		srv.ForcePasswordReset(t, slapdtest.UserDN(user))
		_, err := a.Authenticate(ctx, user, slapdtest.Password(user))
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "the bind succeeded, but the login is refused")
		require.ErrorIs(t, err, ldapauth.ErrPasswordMustChange)
		var acct *ldapauth.AccountError
		require.ErrorAs(t, err, &acct)
		assert.Equal(t, "changeAfterReset", acct.Code)
		assert.NotErrorIs(t, err, ldapauth.ErrAccountLocked)
	})

	t.Run("expired with grace logins", func(t *testing.T) {
		// A policy of its own for one new user: the password expires after a
		// second, then two grace logins.
		const policyDN = "cn=grace,ou=policies," + slapdtest.BaseDN
		admin := srv.Admin(t)
		add := ldap.NewAddRequest(policyDN, nil)
		add.Attribute("objectClass", []string{"pwdPolicy", "device"})
		add.Attribute("cn", []string{"grace"})
		add.Attribute("pwdAttribute", []string{"userPassword"})
		add.Attribute("pwdMaxAge", []string{"1"})
		add.Attribute("pwdGraceAuthNLimit", []string{"2"})
		require.NoError(t, admin.Add(add))
		dn := srv.AddUser(t, "gracie", "gracie-password")
		set := ldap.NewModifyRequest(dn, []ldap.Control{ldap.NewControlString("1.3.6.1.4.1.4203.666.5.12", true, "")})
		set.Replace("pwdPolicySubentry", []string{policyDN})
		set.Replace("pwdChangedTime", []string{time.Now().Add(-time.Hour).UTC().Format("20060102150405Z")})
		require.NoError(t, admin.Modify(set))

		for _, left := range []int{1, 0} {
			u, err := a.Authenticate(ctx, "gracie", "gracie-password")
			require.NoError(t, err, "a grace login")
			require.NotNil(t, u.PasswordWarning)
			assert.Equal(t, left, u.PasswordWarning.GraceLogins)
		}
		_, err := a.Authenticate(ctx, "gracie", "gracie-password")
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		require.ErrorIs(t, err, ldapauth.ErrPasswordExpired)
		var acct *ldapauth.AccountError
		require.ErrorAs(t, err, &acct)
		assert.Equal(t, "passwordExpired", acct.Code)
	})
}
