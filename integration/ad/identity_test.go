package ad_test

import (
	"context"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/sambatest"
)

// addIdentityUser creates an enabled user in CN=Users with the run's name
// for base, the given explicit userPrincipalName (none when empty), and
// syncPassword; it is deleted when the test ends (the DC is shared).
func addIdentityUser(o *adObjects, base, upn string) string {
	o.t.Helper()
	sam := o.name(base)
	req := ldap.NewAddRequest(o.d.UserDN(sam), nil)
	req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
	req.Attribute("sAMAccountName", []string{sam})
	if upn != "" {
		req.Attribute("userPrincipalName", []string{upn})
	}
	req.Attribute("sn", []string{sam})
	req.Attribute("unicodePwd", []string{sambatest.UnicodePwd(syncPassword)})
	req.Attribute("userAccountControl", []string{"512"})
	require.NoError(o.t, o.admin.Add(req), "add user %s", sam)
	o.t.Cleanup(func() { o.delete(o.d.UserDN(sam)) })
	return sam
}

// Issue 11 on a real Active Directory DC. The attack as filed (an explicit
// userPrincipalName equal to another user's sAMAccountName@domain) cannot
// be set up on Samba, which refuses the collision whichever account comes
// first; Windows Server before 2012 R2 accepts it. The same divergence (the
// bind checks one account, the search finds another) is made here by a
// username formatter that maps the victim's name to the attacker's, in
// both name forms. Samba answers no Who Am I: ldapauth applies the DC's own
// rules (a down-level name is unique in its domain; a principal name is the
// explicit holder, else sAMAccountName@domain) and refuses, while genuine
// logins in both forms are proven.
func TestIdentityAD(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	victim := addIdentityUser(o, "victim", "")
	attacker := addIdentityUser(o, "attacker", "")
	const attackerPassword = "Basalt-Heron-42"
	mod := ldap.NewModifyRequest(d.UserDN(attacker), nil)
	mod.Replace("unicodePwd", []string{sambatest.UnicodePwd(attackerPassword)})
	require.NoError(t, o.admin.Modify(mod))

	collide := ldap.NewModifyRequest(d.UserDN(attacker), nil)
	collide.Replace("userPrincipalName", []string{d.UPN(victim)})
	require.Error(t, o.admin.Modify(collide), "Samba refuses an explicit UPN that is another account's implicit one")

	ctx := context.Background()
	for _, form := range []struct {
		name   string
		vars   map[string]string
		bindAs func(string) string
	}{
		{"down-level", nil, d.DownLevel},
		{"principal", map[string]string{
			"LDAP_AUTH_FORMAT_USERNAME":         "django_python3_ldap.utils.format_username_active_directory_principal",
			"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN": sambatest.DNSName,
		}, d.UPN},
	} {
		t.Run(form.name, func(t *testing.T) {
			a, store := newAuth(t, d, form.vars)
			u, err := a.Authenticate(ctx, attacker, attackerPassword)
			require.NoError(t, err, "a genuine login is proven")
			assert.Equal(t, d.UserDN(attacker), u.DN)
			u, err = a.Authenticate(ctx, victim, syncPassword)
			require.NoError(t, err)
			assert.Equal(t, d.UserDN(victim), u.DN)

			cfg, err := ldapauth.LoadConfig(lookup(mergeVars(adEnv(d), form.vars)))
			require.NoError(t, err)
			cfg.Store = store
			cfg.FormatUsername = ldapauth.UsernameFormatterFunc(func(_ *ldapauth.Config, username string) (string, error) {
				if username == victim {
					username = attacker // a mapping that points at the wrong account
				}
				return form.bindAs(username), nil
			})
			diverging, err := ldapauth.New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { diverging.Close() })
			u, err = diverging.Authenticate(ctx, victim, attackerPassword)
			assert.Nil(t, u, "the victim is not returned")
			require.ErrorIs(t, err, ldapauth.ErrIdentityMismatch)
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			var ierr *ldapauth.LoginError
			require.ErrorAs(t, err, &ierr)
			assert.Equal(t, form.bindAs(attacker), ierr.BindName)
			assert.Equal(t, d.UserDN(victim), ierr.EntryDN)
		})
	}
	t.Run("search-then-bind", func(t *testing.T) {
		a, _ := newAuth(t, d, map[string]string{
			"LDAP_AUTH_SEARCH_THEN_BIND":    "true",
			"LDAP_AUTH_CONNECTION_USERNAME": d.AdminDN, "LDAP_AUTH_CONNECTION_PASSWORD": d.AdminPassword,
		})
		_, err := a.Authenticate(ctx, victim, attackerPassword)
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		u, err := a.Authenticate(ctx, victim, syncPassword)
		require.NoError(t, err)
		assert.Equal(t, d.UserDN(victim), u.DN)
	})
}

func mergeVars(base, extra map[string]string) map[string]string {
	for k, v := range extra {
		base[k] = v
	}
	return base
}
