package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/go-ldapauth/ldapauth/internal/testcert"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const base = "dc=example,dc=com"

// loginFilter is the filter ldapauth builds for a login restricted to the
// login group, with the object class GLAuth needs.
func loginFilter(name string) string {
	return "(&(uid=" + ldap.EscapeFilter(name) + ")(objectClass=posixAccount)(memberOf=cn=ldapusers,ou=groups," + base + "))"
}

func dial(t *testing.T, url string, opts ...ldap.DialOpt) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// dialAs dials the plain listener and binds as name (uid=<name>,<base>).
func dialAs(t *testing.T, s *Server, name, password string) *ldap.Conn {
	t.Helper()
	c := dial(t, s.URL())
	require.NoError(t, c.Bind("uid="+ldap.EscapeDN(name)+","+base, password))
	return c
}

func search(c *ldap.Conn, baseDN string, scope int, filter string, attrs ...string) ([]*ldap.Entry, error) {
	res, err := c.Search(ldap.NewSearchRequest(baseDN, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

func dns(entries []*ldap.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.DN)
	}
	return out
}

func TestServerURLsAndDNs(t *testing.T) {
	s := Start(t, DemoDirectory())
	assert.True(t, strings.HasPrefix(s.URL(), "ldap://127.0.0.1:"), s.URL())
	assert.True(t, strings.HasPrefix(s.LDAPSURL(), "ldaps://127.0.0.1:"), s.LDAPSURL())
	assert.Equal(t, base, s.BaseDN())
	assert.Equal(t, "uid=alice,cn=staff,ou=users,"+base, s.UserDN("alice"))
	assert.Equal(t, "uid=alice,cn=staff,ou=users,"+base, s.UserDN("ALICE"), "names are case-insensitive")
	assert.Equal(t, "uid=svc,cn=svcaccts,ou=users,"+base, s.UserDN("svc"))
	assert.Empty(t, s.UserDN("nobody"))
	assert.Equal(t, "cn=ldapusers,ou=groups,"+base, s.GroupDN("ldapusers"))
	assert.Equal(t, "cn=marvel,ou=groups,"+base, s.GroupDN("Marvel"), "the directory's spelling")

	block, _ := pem.Decode(s.CACertPEM())
	require.NotNil(t, block)
	ca, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.True(t, ca.IsCA)
}

func TestBind(t *testing.T) {
	s := Start(t, DemoDirectory())
	for _, u := range DemoDirectory().Users {
		t.Run(u.Name, func(t *testing.T) {
			names := []string{
				s.UserDN(u.Name), // as the server reports it
				"uid=" + ldap.EscapeDN(u.Name) + "," + base, // ldapauth's default formatter with the base as search base
				strings.ToUpper("uid=" + u.Name + "," + base),
			}
			if u.Mail != "" {
				names = append(names, u.Mail)
			}
			for _, name := range names {
				c := dial(t, s.URL())
				assert.NoError(t, c.Bind(name, u.Password), name)
				err := c.Bind(name, u.Password+"x")
				assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials), "%s: %v", name, err)
			}
		})
	}

	c := dial(t, s.URL())
	for _, tt := range []struct{ why, dn, password string }{
		{"an empty password is an unauthenticated bind, refused", "uid=alice," + base, ""},
		{"GLAuth reads ou=users as a primary group", "uid=alice,ou=users," + base, "alice-password"},
		{"wrong primary group", "uid=alice,cn=readers,ou=users," + base, "alice-password"},
		{"nameformat is uid", "cn=alice," + base, "alice-password"},
		{"no DN normalisation", "uid=alice, dc=example, dc=com", "alice-password"},
		{"unknown user", "uid=nobody," + base, "x"},
		{"other base", "uid=alice,dc=other,dc=com", "alice-password"},
	} {
		var err error
		if tt.password == "" {
			err = c.UnauthenticatedBind(tt.dn)
		} else {
			err = c.Bind(tt.dn, tt.password)
		}
		assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials), "%s: %v", tt.why, err)
	}
	assert.NoError(t, c.UnauthenticatedBind(""), "anonymous bind")
}

func TestUserSearch(t *testing.T) {
	s := Start(t, DemoDirectory())
	c := dialAs(t, s, "alice", "alice-password")

	for _, searchBase := range []string{base, "ou=users," + base, "OU=Users,DC=Example,DC=Com"} {
		entries, err := search(c, searchBase, ldap.ScopeWholeSubtree, "(&(uid=alice)(objectClass=posixAccount))",
			"uid", "givenName", "sn", "mail", "objectClass", "accountStatus")
		require.NoError(t, err, searchBase)
		require.Len(t, entries, 1, searchBase)
		e := entries[0]
		assert.Equal(t, s.UserDN("alice"), e.DN)
		assert.Equal(t, "alice", e.GetAttributeValue("uid"))
		assert.Equal(t, "Alice", e.GetAttributeValue("givenName"))
		assert.Equal(t, "Liddell", e.GetAttributeValue("sn"))
		assert.Equal(t, "alice@example.com", e.GetAttributeValue("mail"))
		assert.Equal(t, []string{"posixAccount", "shadowAccount"}, e.GetAttributeValues("objectClass"))
		assert.Equal(t, "active", e.GetAttributeValue("accountStatus"))
	}

	entries, err := search(c, base, ldap.ScopeWholeSubtree, "(&(uid=alice)(objectClass=inetOrgPerson))", "uid")
	require.NoError(t, err)
	assert.Empty(t, entries, "GLAuth users are not inetOrgPerson")

	entries, err = search(c, base, ldap.ScopeWholeSubtree, "(uid=JÜRGEN)", "uid", "givenName", "sn")
	require.NoError(t, err)
	require.Len(t, entries, 1, "non-ASCII values match case-insensitively")
	assert.Equal(t, "jürgen", entries[0].GetAttributeValue("uid"))
	assert.Equal(t, "Groß", entries[0].GetAttributeValue("sn"))
}

func TestMemberOf(t *testing.T) {
	s := Start(t, DemoDirectory())
	c := dialAs(t, s, "alice", "alice-password")

	entries, err := search(c, base, ldap.ScopeWholeSubtree, "(&(uid=alice)(objectClass=posixAccount))", "memberOf")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.ElementsMatch(t, []string{s.GroupDN("ldapusers"), s.GroupDN("readers"), s.GroupDN("staff")},
		entries[0].GetAttributeValues("memberOf"), "the primary group is a memberOf value too")

	members := func(filter string) []string {
		t.Helper()
		entries, err := search(c, base, ldap.ScopeWholeSubtree, filter, "uid")
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.GetAttributeValue("uid"))
		}
		return names
	}
	loginGroup := []string{"alice", "carol", "jürgen", "dave(ops", "mallory"}
	assert.ElementsMatch(t, loginGroup, members("(&(objectClass=posixAccount)(memberOf=cn=ldapusers,ou=groups,"+base+"))"))
	assert.ElementsMatch(t, loginGroup, members("(&(objectClass=posixAccount)(memberOf=CN=LDAPUsers,OU=Groups,DC=Example,DC=Com))"),
		"values compare case-insensitively")
	assert.Empty(t, members("(&(objectClass=posixAccount)(memberOf=cn=ldapusers, ou=groups, dc=example, dc=com))"),
		"values compare as strings, not as DNs")
	assert.Equal(t, []string{"alice"}, members(loginFilter("alice")))
	assert.Empty(t, members(loginFilter("bob")), "bob is outside the login group")
	assert.Equal(t, []string{"dave(ops"}, members(loginFilter("dave(ops")))
	assert.ElementsMatch(t, []string{"bob", "carol"}, members("(memberOf="+s.GroupDN("marvel")+")"))
}

func TestGroupEntries(t *testing.T) {
	s := Start(t, DemoDirectory())
	c := dialAs(t, s, "svc", "svc-password")

	entries, err := search(c, s.GroupDN("marvel"), ldap.ScopeBaseObject, "(objectClass=*)", "cn", "uniqueMember", "memberUid", "objectClass")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	g := entries[0]
	assert.Equal(t, s.GroupDN("marvel"), g.DN)
	assert.Equal(t, "marvel", g.GetAttributeValue("cn"))
	assert.Equal(t, []string{s.UserDN("bob"), s.UserDN("carol")}, g.GetAttributeValues("uniqueMember"))
	assert.Empty(t, g.GetAttributeValues("memberUid"), "groups below ou=groups carry no memberUid")
	assert.Equal(t, []string{"groupOfUniqueNames", "top"}, g.GetAttributeValues("objectClass"))

	entries, err = search(c, "ou=groups,"+base, ldap.ScopeSingleLevel, "(objectClass=groupOfUniqueNames)", "cn")
	require.NoError(t, err)
	assert.Len(t, entries, 5)

	// A subtree search from the base shows the groups again, below ou=users.
	entries, err = search(c, base, ldap.ScopeWholeSubtree, "(&(objectClass=posixGroup)(cn=marvel))", "memberUid", "uniqueMember")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "cn=marvel,ou=users,"+base, entries[0].DN)
	assert.Equal(t, []string{"bob", "carol"}, entries[0].GetAttributeValues("memberUid"))
	assert.Equal(t, []string{s.UserDN("bob"), s.UserDN("carol")}, entries[0].GetAttributeValues("uniqueMember"))
}

func TestNestedGroups(t *testing.T) {
	d := Directory{
		BaseDN: base,
		Groups: []Group{{Name: "all", Include: []string{"team"}}, {Name: "team", Include: []string{"core"}}, {Name: "core"}},
		Users:  []User{{Name: "zoe", Password: "pw", PrimaryGroup: "core"}, {Name: "yan", Password: "pw", PrimaryGroup: "team"}},
	}
	s := Start(t, d)
	c := dialAs(t, s, "zoe", "pw")

	entries, err := search(c, base, ldap.ScopeWholeSubtree, "(uid=zoe)", "memberOf")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.ElementsMatch(t, []string{s.GroupDN("core"), s.GroupDN("team"), s.GroupDN("all")}, entries[0].GetAttributeValues("memberOf"))

	entries, err = search(c, base, ldap.ScopeWholeSubtree, "(&(objectClass=posixGroup)(cn=all))", "memberUid")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, []string{"yan", "zoe"}, entries[0].GetAttributeValues("memberUid"))
}

func TestSearchAccess(t *testing.T) {
	s := Start(t, DemoDirectory())

	svc := dialAs(t, s, "svc", "svc-password")
	entries, err := search(svc, "uid=nobody,cn=staff,ou=users,"+base, ldap.ScopeBaseObject, "(objectClass=*)")
	require.NoError(t, err, "a missing DN is no error for GLAuth")
	assert.Empty(t, entries)
	entries, err = search(svc, s.UserDN("alice"), ldap.ScopeBaseObject, "(objectClass=*)", "uid")
	require.NoError(t, err)
	assert.Equal(t, []string{s.UserDN("alice")}, dns(entries))

	for _, tt := range []struct {
		who, password, base string
	}{
		{"alice", "alice-password", "ou=groups," + base},
		{"alice", "alice-password", s.UserDN("alice")},
		{"svc", "svc-password", "dc=other,dc=com"},
		{"", "", base},
	} {
		c := dial(t, s.URL())
		if tt.who != "" {
			require.NoError(t, c.Bind("uid="+tt.who+","+base, tt.password))
		}
		_, err := search(c, tt.base, ldap.ScopeWholeSubtree, "(objectClass=*)")
		assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights), "%s in %s: %v", tt.who, tt.base, err)
		_, err = search(c, base, ldap.ScopeBaseObject, "(objectClass=*)")
		assert.Error(t, err, "GLAuth drops the connection after a search error")
	}
}

func TestDisabledUser(t *testing.T) {
	s := Start(t, DemoDirectory())
	c := dialAs(t, s, "mallory", "mallory-password") // GLAuth does not refuse the bind
	entries, err := search(c, base, ldap.ScopeWholeSubtree, "(uid=mallory)", "accountStatus")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "inactive", entries[0].GetAttributeValue("accountStatus"))

	entries, err = search(c, base, ldap.ScopeWholeSubtree, "(&(uid=mallory)(objectClass=posixAccount)(accountStatus=active))")
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// TestEscaping pins what GLAuth does with names that need escaping in
// filters (RFC 4515) or DNs (RFC 4514), so that an upgrade that changes it
// is noticed.
func TestEscaping(t *testing.T) {
	names := []string{"dave(ops", "a)b", "a*", "ab", "a,b", "a+b", `a\b`, "a;b", "o'brien", "a b"}
	d := DemoDirectory()
	for i, n := range names[1:] {
		d.Users = append(d.Users, User{Name: n, Password: "pw", Mail: fmt.Sprintf("user%d@example.com", i), PrimaryGroup: "staff"})
	}
	s := Start(t, d)
	password := func(n string) string {
		if n == "dave(ops" {
			return "dave(ops-password"
		}
		return "pw"
	}

	tests := []struct {
		name       string
		escapedDN  bool // binds as uid=<RFC 4514 escaped>,<base>
		rawDN      bool // binds as uid=<unescaped>,<base>
		searchCode uint16
		found      []string // uids found by (uid=<RFC 4515 escaped>)
	}{
		{"dave(ops", true, true, 0, []string{"dave(ops"}},
		{"o'brien", true, true, 0, []string{"o'brien"}},
		{"a b", true, true, 0, []string{"a b"}},
		{"a)b", true, true, ldap.LDAPResultOperationsError, nil},
		{"a*", true, true, 0, []string{"alice", "a)b", "a*", "ab", "a,b", "a+b", `a\b`, "a;b", "a b"}}, // an escaped * is a wildcard
		{"a,b", false, false, 0, []string{"a,b"}},
		{"a+b", false, true, 0, []string{"a+b"}},
		{`a\b`, false, true, 0, []string{`a\b`}},
		{"a;b", false, true, 0, []string{"a;b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, s.URL())
			err := c.Bind("uid="+ldap.EscapeDN(tt.name)+","+base, password(tt.name))
			assert.Equal(t, tt.escapedDN, err == nil, "escaped DN bind: %v", err)
			err = c.Bind("uid="+tt.name+","+base, password(tt.name))
			assert.Equal(t, tt.rawDN, err == nil, "raw DN bind: %v", err)

			require.NoError(t, c.Bind("uid=svc,"+base, "svc-password"))
			entries, err := search(c, base, ldap.ScopeWholeSubtree, "(&(objectClass=posixAccount)(uid="+ldap.EscapeFilter(tt.name)+"))", "uid")
			if tt.searchCode != 0 {
				assert.True(t, ldap.IsErrorWithCode(err, tt.searchCode), "%v", err)
				return
			}
			require.NoError(t, err)
			var uids []string
			for _, e := range entries {
				uids = append(uids, e.GetAttributeValue("uid"))
			}
			assert.ElementsMatch(t, tt.found, uids)
		})
	}

	c := dial(t, s.URL())
	assert.NoError(t, c.Bind("user3@example.com", "pw"), "a,b binds by mail")
	require.NoError(t, c.Bind("uid=svc,"+base, "svc-password"))
	entries, err := search(c, base, ldap.ScopeWholeSubtree, "(uid=a,b)")
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "uid=a,b,cn=staff,ou=users,"+base, entries[0].DN, "DNs are reported unescaped")
	_, err = ldap.ParseDN(entries[0].DN)
	assert.Error(t, err, "and so do not parse")
}

func TestFilterSupport(t *testing.T) {
	s := Start(t, DemoDirectory())
	for _, tt := range []struct {
		filter string
		want   []string
		code   uint16
	}{
		{"(|(uid=alice)(uid=bob))", []string{"alice", "bob"}, 0},
		{"(&(objectClass=posixAccount)(!(memberOf=cn=staff,ou=groups," + base + ")))", []string{"svc"}, 0},
		{"(&(objectClass=posixAccount)(uid=c*))", []string{"carol"}, 0},
		{"(&(objectClass=posixAccount)(mail=*))", []string{"alice", "bob", "carol", "jürgen", "dave(ops", "mallory"}, 0},
		{"(uidNumber>=10000)", nil, ldap.LDAPResultOperationsError},
		{"(uid~=alice)", nil, ldap.LDAPResultOperationsError},
	} {
		c := dialAs(t, s, "svc", "svc-password")
		entries, err := search(c, base, ldap.ScopeWholeSubtree, tt.filter, "uid")
		if tt.code != 0 {
			assert.True(t, ldap.IsErrorWithCode(err, tt.code), "%s: %v", tt.filter, err)
			continue
		}
		require.NoError(t, err, tt.filter)
		var uids []string
		for _, e := range entries {
			uids = append(uids, e.GetAttributeValue("uid"))
		}
		assert.ElementsMatch(t, tt.want, uids, tt.filter)
	}
}

func TestTLS(t *testing.T) {
	s := Start(t, DemoDirectory())
	other, err := testcert.NewCA("another CA")
	require.NoError(t, err)

	t.Run("StartTLS", func(t *testing.T) {
		c := dial(t, s.URL())
		require.NoError(t, c.StartTLS(&tls.Config{RootCAs: s.CAPool(), ServerName: "127.0.0.1"}))
		require.NoError(t, c.Bind("uid=alice,"+base, "alice-password"))
		state, ok := c.TLSConnectionState()
		require.True(t, ok)
		assert.True(t, state.HandshakeComplete)

		c = dial(t, s.URL())
		require.NoError(t, c.StartTLS(&tls.Config{RootCAs: s.CAPool(), ServerName: "localhost"}))

		c = dial(t, s.URL())
		err := c.StartTLS(&tls.Config{RootCAs: other.Pool(), ServerName: "127.0.0.1"})
		// go-ldap flattens the handshake error into its message.
		assert.True(t, ldap.IsErrorWithCode(err, ldap.ErrorNetwork), "%v", err)
	})

	t.Run("LDAPS", func(t *testing.T) {
		c := dial(t, s.LDAPSURL(), ldap.DialWithTLSConfig(&tls.Config{RootCAs: s.CAPool()}))
		require.NoError(t, c.Bind("uid=alice,"+base, "alice-password"))
		entries, err := search(c, base, ldap.ScopeWholeSubtree, "(uid=alice)", "uid")
		require.NoError(t, err)
		assert.Len(t, entries, 1)

		_, err = ldap.DialURL(s.LDAPSURL(), ldap.DialWithTLSConfig(&tls.Config{RootCAs: other.Pool()}))
		var unknown x509.UnknownAuthorityError
		assert.ErrorAs(t, err, &unknown)
	})
}

func TestPaging(t *testing.T) {
	s := Start(t, DemoDirectory())
	c := dialAs(t, s, "svc", "svc-password")
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=posixAccount)", []string{"uid"}, nil)

	res, err := c.SearchWithPaging(req, 2)
	require.NoError(t, err)
	assert.Len(t, res.Entries, 7)

	// GLAuth ignores the page size: everything comes in the first page,
	// with an empty cookie.
	paging := ldap.NewControlPaging(2)
	res, err = c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=posixAccount)", []string{"uid"}, []ldap.Control{paging}))
	require.NoError(t, err)
	assert.Len(t, res.Entries, 7)
	ctrl, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
	require.True(t, ok)
	assert.Empty(t, ctrl.Cookie)

	// A size limit truncates silently with success, not sizeLimitExceeded.
	res, err = c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 3, 0, false, "(objectClass=posixAccount)", []string{"uid"}, nil))
	require.NoError(t, err)
	assert.Len(t, res.Entries, 3)
}

func TestSetDirectory(t *testing.T) {
	s := Start(t, DemoDirectory())
	c := dialAs(t, s, "svc", "svc-password")
	uids := func() []string {
		t.Helper()
		entries, err := search(c, base, ldap.ScopeWholeSubtree, "(&(objectClass=posixAccount)(memberOf="+s.GroupDN("marvel")+"))", "uid")
		require.NoError(t, err)
		var out []string
		for _, e := range entries {
			out = append(out, e.GetAttributeValue("uid"))
		}
		return out
	}
	assert.ElementsMatch(t, []string{"bob", "carol"}, uids())

	d := DemoDirectory()
	d.Users = slices.DeleteFunc(d.Users, func(u User) bool { return u.Name == "bob" })
	d.Users = append(d.Users, User{Name: "zed", Password: "zed-password", PrimaryGroup: "staff", Groups: []string{"marvel"}})
	require.NoError(t, s.SetDirectory(d))
	assert.ElementsMatch(t, []string{"carol", "zed"}, uids(), "the open connection sees the new data")
	assert.Equal(t, "uid=zed,cn=staff,ou=users,"+base, s.UserDN("zed"))
	assert.Empty(t, s.UserDN("bob"))

	other := dial(t, s.URL())
	assert.NoError(t, other.Bind("uid=zed,"+base, "zed-password"))
	err := other.Bind("uid=bob,"+base, "bob-password")
	assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials), "%v", err)

	bad := DemoDirectory()
	bad.BaseDN = ""
	require.ErrorIs(t, s.SetDirectory(bad), ErrInvalidDirectory)
	assert.ElementsMatch(t, []string{"carol", "zed"}, uids(), "an invalid directory leaves the old one")
}

func TestSetDirectoryConcurrent(t *testing.T) {
	s := Start(t, DemoDirectory())
	small := DemoDirectory()
	small.Users = small.Users[:1]
	small.Users = append(small.Users, DemoDirectory().Users[6]) // svc

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 4 {
		wg.Go(func() {
			c, err := ldap.DialURL(s.URL())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for range 20 {
				if err := c.Bind("uid=alice,"+base, "alice-password"); err != nil {
					errs <- err
					return
				}
				entries, err := search(c, base, ldap.ScopeWholeSubtree, loginFilter("alice"), "uid", "memberOf")
				if err != nil {
					errs <- err
					return
				}
				if len(entries) != 1 {
					errs <- fmt.Errorf("worker %d: %d entries", i, len(entries))
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			d := DemoDirectory()
			if i%2 == 0 {
				d = small
			}
			if err := s.SetDirectory(d); err != nil {
				errs <- err
			}
			_ = s.UserDN("alice")
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestCloseClientConnections(t *testing.T) {
	s := Start(t, DemoDirectory())
	plain := dialAs(t, s, "alice", "alice-password")
	secure := dial(t, s.LDAPSURL(), ldap.DialWithTLSConfig(&tls.Config{RootCAs: s.CAPool()}))
	require.NoError(t, secure.Bind("uid=alice,"+base, "alice-password"))

	s.CloseClientConnections()

	_, err := search(plain, base, ldap.ScopeWholeSubtree, "(uid=alice)")
	assert.Error(t, err)
	_, err = search(secure, base, ldap.ScopeWholeSubtree, "(uid=alice)")
	assert.Error(t, err)

	c := dialAs(t, s, "alice", "alice-password")
	entries, err := search(c, base, ldap.ScopeWholeSubtree, "(uid=alice)")
	require.NoError(t, err, "the server keeps listening")
	assert.Len(t, entries, 1)
}

func TestCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	s, err := NewServer(DemoDirectory())
	require.NoError(t, err)
	var conns []*ldap.Conn
	for range 3 {
		c, err := ldap.DialURL(s.URL())
		require.NoError(t, err)
		require.NoError(t, c.Bind("uid=alice,"+base, "alice-password"))
		conns = append(conns, c)
	}
	c, err := ldap.DialURL(s.URL())
	require.NoError(t, err)
	require.NoError(t, c.StartTLS(&tls.Config{RootCAs: s.CAPool(), ServerName: "127.0.0.1"}))
	conns = append(conns, c)
	c, err = ldap.DialURL(s.LDAPSURL(), ldap.DialWithTLSConfig(&tls.Config{RootCAs: s.CAPool()}))
	require.NoError(t, err)
	conns = append(conns, c)

	s.Close()
	s.Close() // idempotent

	for _, c := range conns {
		c.Close()
	}
	_, err = ldap.DialURL(s.URL())
	assert.Error(t, err, "closed")
}

func TestEnv(t *testing.T) {
	s := Start(t, DemoDirectory())
	env := s.Env()
	assert.Equal(t, "cn=staff,ou=users,"+base, s.UsersBase(), "the demo users' primary group")
	assert.Equal(t, map[string]string{
		"LDAP_AUTH_URL":          s.URL(),
		"LDAP_AUTH_SEARCH_BASE":  s.UsersBase(),
		"LDAP_AUTH_OBJECT_CLASS": "posixAccount",
		"LDAP_AUTH_USER_FIELDS":  "username=uid,first_name=givenName,last_name=sn,email=mail",
	}, env)

	// The login django-python3-ldap does with these settings: bind as
	// uid=<typed>,<search base>, search as the user, map the fields.
	login := func(username, password string) ([]*ldap.Entry, error) {
		c := dial(t, env["LDAP_AUTH_URL"])
		if err := c.Bind("uid="+ldap.EscapeDN(username)+","+env["LDAP_AUTH_SEARCH_BASE"], password); err != nil {
			return nil, err
		}
		filter := "(&(uid=" + ldap.EscapeFilter(username) + ")(objectClass=" + env["LDAP_AUTH_OBJECT_CLASS"] + ")(memberOf=" + s.GroupDN("ldapusers") + "))"
		return search(c, env["LDAP_AUTH_SEARCH_BASE"], ldap.ScopeWholeSubtree, filter, "uid", "givenName", "sn", "mail", "memberOf")
	}
	for _, u := range []string{"alice", "carol", "jürgen", "dave(ops"} {
		entries, err := login(u, u+"-password")
		require.NoError(t, err, u)
		require.Len(t, entries, 1, u)
		assert.Equal(t, u, entries[0].GetAttributeValue("uid"))
		// The bind name is the entry's own DN, which proves who logged in.
		assert.Equal(t, "uid="+u+","+env["LDAP_AUTH_SEARCH_BASE"], entries[0].DN, u)
	}
	entries, err := login("bob", "bob-password")
	require.NoError(t, err)
	assert.Empty(t, entries, "bob binds but is outside the login group")
	_, err = login("alice", "wrong")
	assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials))
}

func TestGenerated(t *testing.T) {
	// Generate(10000, 1000) is measured by BenchmarkGenerated: each search
	// costs O(users × groups) in GLAuth, too slow for a test under -race.
	const users, groups = 2000, 200
	s := Start(t, Generate(users, groups))
	c := dialAs(t, s, "svc", GeneratedPassword("svc"))

	res, err := c.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=posixAccount)", []string{"uid", "memberOf"}, nil), 500)
	require.NoError(t, err)
	require.Len(t, res.Entries, users+1)
	e := res.Entries[1201]
	assert.Equal(t, "user01201", e.GetAttributeValue("uid"))
	assert.ElementsMatch(t, []string{
		s.GroupDN("group0001"),                         // primary: 1201 % 200
		s.GroupDN("group0000"),                         // nested: group0000 includes group0001
		s.GroupDN("group0008"), s.GroupDN("group0016"), // (7*1201+1) % 200, (13*1201+3) % 200
	}, e.GetAttributeValues("memberOf"))

	res, err = c.SearchWithPaging(ldap.NewSearchRequest("ou=groups,"+base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=groupOfUniqueNames)", []string{"cn", "uniqueMember"}, nil), 100)
	require.NoError(t, err)
	assert.Len(t, res.Entries, groups+1)

	user := dialAs(t, s, "user01999", GeneratedPassword("user01999"))
	entries, err := search(user, base, ldap.ScopeWholeSubtree, "(&(uid=user01999)(objectClass=posixAccount))", "uid")
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

func BenchmarkGenerated(b *testing.B) {
	for _, size := range []struct{ users, groups int }{{1000, 100}, {10000, 1000}} {
		b.Run(fmt.Sprintf("%d_users_%d_groups", size.users, size.groups), func(b *testing.B) {
			s := Start(b, Generate(size.users, size.groups))
			c, err := ldap.DialURL(s.URL())
			require.NoError(b, err)
			defer c.Close()
			require.NoError(b, c.Bind("uid=svc,"+base, GeneratedPassword("svc")))

			b.Run("paged_read_all", func(b *testing.B) {
				for b.Loop() {
					res, err := c.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
						"(objectClass=posixAccount)", []string{"uid", "memberOf"}, nil), 500)
					require.NoError(b, err)
					require.Len(b, res.Entries, size.users+1)
				}
			})
			b.Run("login_search", func(b *testing.B) {
				for b.Loop() {
					_, err := search(c, base, ldap.ScopeWholeSubtree, "(&(uid=user00042)(objectClass=posixAccount))", "uid", "memberOf")
					require.NoError(b, err)
				}
			})
		})
	}
}

// Concurrent searches over users in three or more groups: GLAuth appends
// the primary group to each user's group list on every search, which raced
// on a shared backing array until the directory clipped those lists (the
// race detector reports it without the clip).
func TestConcurrentSearchesManyGroups(t *testing.T) {
	d := DemoDirectory()
	for i := range d.Users {
		if d.Users[i].Name == "alice" {
			d.Users[i].Groups = []string{"ldapusers", "readers", "marvel"}
		}
	}
	s := Start(t, d)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			c, err := ldap.DialURL(s.URL())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Bind("uid=alice,"+base, "alice-password"); err != nil {
				errs <- err
				return
			}
			for range 10 {
				entries, err := search(c, base, ldap.ScopeWholeSubtree, loginFilter("alice"), "uid", "memberOf")
				if err != nil {
					errs <- err
					return
				}
				if len(entries) != 1 || len(entries[0].GetAttributeValues("memberOf")) != 4 {
					errs <- fmt.Errorf("alice's entry: %v", dns(entries))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}
