package slapdtest_test

import (
	"fmt"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// An integration test starts its own directory, changes it as the admin and
// logs in as a user over StartTLS. (Examples cannot take a *testing.T, so
// this one shows the body of a test.)
func Example() {
	var t *testing.T // the test's t

	srv := slapdtest.Start(t) // skipped without slapd; stopped when t ends
	srv.AddMember(t, "ldapusers", slapdtest.UserDN("bob"))

	conn := srv.Dial(t)
	if err := conn.StartTLS(srv.TLSConfig()); err != nil {
		t.Fatal(err)
	}
	if err := conn.Bind(slapdtest.UserDN("bob"), slapdtest.Password("bob")); err != nil {
		t.Fatal(err)
	}
	res, err := conn.Search(ldap.NewSearchRequest(slapdtest.PeopleDN, ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 0, false, "(uid=bob)", []string{"memberOf"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(res.Entries[0].GetAttributeValues("memberOf"))
}

// A directory shared by all tests of a package, with 5,000 generated users
// in the login group, started once in TestMain.
func ExampleNew() {
	var m *testing.M // TestMain's m

	srv, err := slapdtest.New(slapdtest.Options{
		GeneratedUsers:      5000,
		GeneratedUserGroups: []string{"ldapusers"},
	})
	if err != nil {
		panic(err) // errors.Is(err, slapdtest.ErrNotInstalled): skip instead
	}
	_ = srv.URL          // ldap://127.0.0.1:PORT, for the tests
	_ = slapdtest.Run(m) // runs the tests, then stops srv (and any other server left)
}
