package openldap_test

import (
	"context"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// BenchmarkSyncNestedLoginGroup: a no-op sync of 5,000 stored users, all
// members of readers, with readers as the login group (nesting off) and
// with outer, whose only member is readers, as the login group
// (LDAP_AUTH_NESTED_GROUPS=walk). The walk's read costs one listing of the
// group DNs and one read per nested group more than the direct read;
// without the walk down, each nested member missed by the direct term got
// the login's second look, a few searches per stored user.
func BenchmarkSyncNestedLoginGroup(b *testing.B) {
	const generated = 5000
	srv := slapdtest.StartWith(b, slapdtest.Options{GeneratedUsers: generated, GeneratedUserGroups: []string{"readers"}})
	add := ldap.NewAddRequest(slapdtest.GroupDN("outer"), nil)
	add.Attribute("objectClass", []string{"groupOfNames"})
	add.Attribute("member", []string{slapdtest.GroupDN("readers")})
	if err := srv.Admin(b).Add(add); err != nil {
		b.Fatal(err)
	}
	env := func(loginGroup, nested string) map[string]string {
		return jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS", "flagsmith_ldap.ldap.login_group_search_filter",
			"LDAP_LOGIN_GROUP", slapdtest.GroupDN(loginGroup),
			"LDAP_AUTH_NESTED_GROUPS", nested,
			"LDAP_SYNCED_GROUPS", slapdtest.GroupDN("readers"))
	}
	store := ldapauth.NewMemStore()
	fill, err := syncAuthB(b, env("readers", "off"), store).Sync(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
	if err != nil || len(fill.UsersCreated) < generated {
		b.Fatalf("fill: %v, %v", fill, err)
	}
	for _, tt := range []struct{ name, group, nested string }{
		{"direct login group, off", "readers", "off"},
		{"nested login group, walk", "outer", "walk"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			a := syncAuthB(b, env(tt.group, tt.nested), store)
			for b.Loop() {
				rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
				if err != nil || rep.Changes() != 0 {
					b.Fatalf("%v, %v", rep, err)
				}
			}
		})
	}
}

func syncAuthB(b *testing.B, env map[string]string, store *ldapauth.MemStore) *ldapauth.Authenticator {
	b.Helper()
	cfg, err := ldapauth.LoadConfig(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
	if err != nil {
		b.Fatal(err)
	}
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Close() })
	return a
}
