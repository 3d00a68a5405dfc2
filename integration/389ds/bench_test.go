package ds389_test

import (
	"context"
	"testing"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/dstest"
)

// BenchmarkNestedLogin: carol logs in through the login group nested-parent
// (she is in nested-child) with two synced groups, one she is in through
// nesting and one she is not in (staff, the case where walk would search
// for the groups above hers). With memberOf listing nested groups, walk
// costs what off does; the third case walks anyway, as ldapauth must where
// memberOf lists direct groups only.
func BenchmarkNestedLogin(b *testing.B) {
	srv := dstest.Shared(b)
	for _, tt := range []struct{ name, nested, dirType string }{
		{"off", "off", "auto"},
		{"walk", "walk", "auto"},
		// The walk as on a directory whose memberOf lists direct groups
		// only: what the 389-DS shortcut saves.
		{"walk as on other directories", "walk", "other"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			env := flagsmithEnv(srv.URL, "LDAP_AUTH_DIRECTORY_TYPE", tt.dirType,
				"LDAP_AUTH_FORMAT_SEARCH_FILTERS", "login_group", "LDAP_LOGIN_GROUP", dstest.GroupDN("nested-parent"),
				"LDAP_AUTH_SYNC_USER_RELATIONS", "sync_user_groups", "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID", "1",
				"LDAP_SYNCED_GROUPS", dstest.GroupDN("nested-parent")+":"+dstest.GroupDN("staff"),
				"LDAP_AUTH_NESTED_GROUPS", tt.nested)
			cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				b.Fatal(err)
			}
			cfg.Store = ldapauth.NewMemStore()
			a, err := ldapauth.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			ctx := context.Background()
			if _, err := a.Authenticate(ctx, "carol", dstest.Password("carol")); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := a.Authenticate(ctx, "carol", dstest.Password("carol")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
