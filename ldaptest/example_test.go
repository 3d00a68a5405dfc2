package ldaptest_test

import (
	"fmt"
	"log"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// A login as django-python3-ldap does it, against the demo directory: bind as
// the user, then search for the user in the login group.
func ExampleNewServer() {
	srv, err := ldaptest.NewServer(ldaptest.DemoDirectory())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	env := srv.Env()

	conn, err := ldap.DialURL(env["LDAP_AUTH_URL"])
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Bind("uid=alice,"+env["LDAP_AUTH_SEARCH_BASE"], "alice-password"); err != nil {
		log.Fatal(err)
	}
	filter := fmt.Sprintf("(&(uid=alice)(objectClass=%s)(memberOf=%s))", env["LDAP_AUTH_OBJECT_CLASS"], srv.GroupDN("ldapusers"))
	res, err := conn.Search(ldap.NewSearchRequest(env["LDAP_AUTH_SEARCH_BASE"], ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 0, false, filter, []string{"givenName", "sn", "mail", "memberOf"}, nil))
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range res.Entries {
		fmt.Println(e.DN)
		fmt.Println(e.GetAttributeValue("givenName"), e.GetAttributeValue("sn"), e.GetAttributeValue("mail"))
		for _, g := range e.GetAttributeValues("memberOf") {
			fmt.Println("member of", g)
		}
	}
	// Output:
	// uid=alice,cn=staff,ou=users,dc=example,dc=com
	// Alice Liddell alice@example.com
	// member of cn=ldapusers,ou=groups,dc=example,dc=com
	// member of cn=readers,ou=groups,dc=example,dc=com
	// member of cn=staff,ou=groups,dc=example,dc=com
}

// In a test of your own login handler: start the demo directory, point the
// environment at it, and check who may log in.
func ExampleStart() {
	testLogin := func(t *testing.T) {
		srv := ldaptest.Start(t, ldaptest.DemoDirectory()) // closed when t ends
		for k, v := range srv.Env() {
			t.Setenv(k, v)
		}
		t.Setenv("LDAP_LOGIN_GROUP", srv.GroupDN("ldapusers"))
		t.Setenv("LDAP_AUTH_FORMAT_SEARCH_FILTERS", "flagsmith_ldap.ldap.login_group_search_filter")

		// ... your handler must let alice in ("alice-password") and keep bob
		// ("bob-password", outside ldapusers) out.
	}
	_ = testLogin // a Test function of your package
}
