package openldap_test

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

// LDAP_AUTH_EXCLUDE_DISABLED on OpenLDAP (the directory type read from the
// root DSE): the ppolicy's permanent lock, pwdAccountLockedTime
// 000001010000Z (how an administrator disables an account), leaves a user
// out of the sync, which removes them; a lockout after wrong passwords
// (another time) does not, so nobody can make the sync drop a user by
// guessing their password. Without the setting both stay.
func TestExcludeDisabledOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	base := jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword)
	a := syncAuth(t, base, store)
	loginAll(t, a, "alice", "bob", "carol")

	lock := func(uid, when string) {
		req := ldap.NewModifyRequest(slapdtest.UserDN(uid), []ldap.Control{ldap.NewControlString("1.3.6.1.4.1.4203.666.5.12", true, "")})
		req.Replace("pwdAccountLockedTime", []string{when})
		require.NoError(t, srv.Admin(t).Modify(req))
	}
	lock("bob", "000001010000Z")
	lock("carol", time.Now().UTC().Format("20060102150405Z"))

	rep := runSync(t, a, ldapauth.SyncOptions{DryRun: true})
	assert.Empty(t, rep.UsersRemoved, "without LDAP_AUTH_EXCLUDE_DISABLED")

	for _, dirType := range []string{"auto", "openldap"} {
		t.Run(dirType, func(t *testing.T) {
			env := jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
				"LDAP_AUTH_EXCLUDE_DISABLED", "true", "LDAP_AUTH_DIRECTORY_TYPE", dirType)
			a := syncAuth(t, env, store)
			rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{DryRun: true})
			require.NoError(t, err)
			assert.Equal(t, []string{"bob"}, rep.UsersRemoved, "the permanent lock only")
		})
	}
}
