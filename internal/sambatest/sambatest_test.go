package sambatest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var shared Shared

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

// adDiagnostic is the diagnostic message of a failed AD bind.
var adDiagnostic = regexp.MustCompile(`^80090308: LdapErr: DSID-[0-9A-F]{8}, comment: AcceptSecurityContext error, data ([0-9a-f]+), v[0-9a-f]+$`)

// bindError binds as name and returns the LDAP error, which must be one.
func bindError(t *testing.T, d *DC, name, password string) *ldap.Error {
	t.Helper()
	err := d.Dial(t).Bind(name, password)
	require.Error(t, err, "bind as %q", name)
	var lerr *ldap.Error
	require.True(t, errors.As(err, &lerr), "%T: %v", err, err)
	return lerr
}

// dataCode returns the "data" code of a failed AD bind.
func dataCode(t *testing.T, d *DC, name, password string) string {
	t.Helper()
	lerr := bindError(t, d, name, password)
	require.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), lerr.ResultCode)
	m := adDiagnostic.FindStringSubmatch(lerr.Err.Error())
	require.NotNil(t, m, "diagnostic %q", lerr.Err.Error())
	return m[1]
}

func search(t *testing.T, c *ldap.Conn, base string, scope int, filter string, attrs ...string) *ldap.SearchResult {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	require.NoError(t, err, filter)
	return res
}

func dns(res *ldap.SearchResult) []string {
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.DN)
	}
	return out
}

func userConn(t *testing.T, d *DC, sam string) *ldap.Conn {
	t.Helper()
	c := d.Dial(t)
	require.NoError(t, c.Bind(d.DownLevel(sam), d.Users[sam]))
	return c
}

func TestStart(t *testing.T) {
	d := shared.Get(t)
	t.Logf("provision + start + seed: %v", d.StartupTime)
	assert.Same(t, d, shared.Get(t), "Shared hands out one DC")
	assert.Equal(t, "ldap://127.0.0.1:389", d.URL)
	assert.Equal(t, "ldaps://127.0.0.1:636", d.LDAPSURL)
	assert.Equal(t, "CN=alice,CN=Users,DC=ldapauth,DC=test", d.UserDN(UserAlice))
	assert.Equal(t, "CN=nested-parent,CN=Users,DC=ldapauth,DC=test", d.GroupDN(GroupNestedParent))
	assert.Equal(t, `LDAPAUTH\alice`, d.DownLevel(UserAlice))
	assert.Equal(t, "alice@ldapauth.test", d.UPN(UserAlice))
	assert.Len(t, d.Users, len(seedUsers))
}

// Samba accepts the DN, the down-level name and the UPN (case-insensitive),
// not the bare sAMAccountName that real AD also accepts.
func TestBindNameForms(t *testing.T) {
	d := shared.Get(t)
	pw := d.Users[UserAlice]
	for _, name := range []string{
		"CN=alice,CN=Users,DC=ldapauth,DC=test",
		"cn=Alice,cn=users,dc=LDAPAUTH,dc=test",
		`LDAPAUTH\alice`,
		`ldapauth\ALICE`,
		"alice@ldapauth.test",
		"ALICE@LDAPAUTH.TEST",
		"alice@LDAPAUTH", // NetBIOS domain in UPN form
	} {
		t.Run(name, func(t *testing.T) {
			assert.NoError(t, d.Dial(t).Bind(name, pw))
		})
	}
	for _, name := range []string{"alice", "Alice Liddell", `LDAPAUTH.TEST\alice`} {
		t.Run("not "+name, func(t *testing.T) {
			assert.Equal(t, "52e", dataCode(t, d, name, pw))
		})
	}
}

func TestBindNonASCII(t *testing.T) {
	d := shared.Get(t)
	for _, name := range []string{d.DownLevel(UserZoe), d.UPN(UserZoe), d.UserDN(UserZoe)} {
		assert.NoError(t, d.Dial(t).Bind(name, d.Users[UserZoe]), name)
	}
	assert.NoError(t, d.Dial(t).Bind(d.DownLevel(UserUnicodePwd), d.Users[UserUnicodePwd]))
	res := search(t, userConn(t, d, UserAlice), d.BaseDN, ldap.ScopeWholeSubtree, "(sAMAccountName=zoë)", "givenName")
	require.Len(t, res.Entries, 1)
	assert.Equal(t, "Zoë", res.Entries[0].GetAttributeValue("givenName"))
}

// The data codes Samba 4.17 returns, for every bind name form that resolves.
func TestBindDataCodes(t *testing.T) {
	d := shared.Get(t)
	tests := []struct {
		name, sam, password, code string
	}{
		{"wrong password", UserAlice, "wrong", "52e"},
		{"unknown user", "nosuch", "whatever", "52e"}, // AD: 525; Samba: 52e
		{"disabled", UserDave, d.Users[UserDave], "533"},
		{"account expired", UserErin, d.Users[UserErin], "701"},
		{"must change password", UserFrank, d.Users[UserFrank], "773"},
		{"password expired", UserHeidi, d.Users[UserHeidi], "532"},
		{"locked out", UserIvan, d.Users[UserIvan], "775"},
		{"locked out, wrong password", UserIvan, "wrong", "775"},
		{"disabled, wrong password", UserDave, "wrong", "52e"},
		{"expired, wrong password", UserErin, "wrong", "52e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range []string{d.DownLevel(tt.sam), d.UPN(tt.sam), d.UserDN(tt.sam)} {
				assert.Equal(t, tt.code, dataCode(t, d, name, tt.password), name)
			}
		})
	}
}

// Samba refuses an unauthenticated bind that names a user (go-ldap refuses
// an empty password in Bind itself).
func TestUnauthenticatedBind(t *testing.T) {
	d := shared.Get(t)
	err := d.Dial(t).UnauthenticatedBind(d.DownLevel(UserAlice))
	assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials), "%v", err)
	err = d.Dial(t).Bind(d.DownLevel(UserAlice), "")
	assert.True(t, ldap.IsErrorWithCode(err, ldap.ErrorEmptyPassword), "%v", err)
}

func TestWhoAmIUnsupported(t *testing.T) {
	d := shared.Get(t)
	_, err := userConn(t, d, UserAlice).WhoAmI(nil)
	assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultProtocolError), "%v", err)
}

// A subtree search from the domain root returns the entry and a search
// continuation reference to the Configuration partition, in
// SearchResult.Referrals, with no error.
func TestSearchReferrals(t *testing.T) {
	d := shared.Get(t)
	res := search(t, userConn(t, d, UserAlice), d.BaseDN, ldap.ScopeWholeSubtree,
		"(&(sAMAccountName=alice)(objectClass=user))", "givenName", "sn", "mail")
	require.Len(t, res.Entries, 1)
	e := res.Entries[0]
	assert.Equal(t, d.UserDN(UserAlice), e.DN)
	assert.Equal(t, "Alice", e.GetAttributeValue("givenName"))
	assert.Equal(t, "Liddell", e.GetAttributeValue("sn"))
	assert.Equal(t, "alice@ldapauth.test", e.GetAttributeValue("mail"))
	assert.Equal(t, []string{"ldap://ldapauth.test/CN=Configuration,DC=ldapauth,DC=test"}, res.Referrals)
}

func TestMemberOf(t *testing.T) {
	d := shared.Get(t)
	res := search(t, userConn(t, d, UserAlice), d.UserDN(UserAlice), ldap.ScopeBaseObject, "(objectClass=*)", "memberOf", "primaryGroupID")
	require.Len(t, res.Entries, 1)
	assert.ElementsMatch(t, []string{d.GroupDN(GroupLogin), d.GroupDN(GroupReaders), d.GroupDN(GroupBig)},
		res.Entries[0].GetAttributeValues("memberOf"), "memberOf lists direct groups, not the primary group")
	assert.Equal(t, "513", res.Entries[0].GetAttributeValue("primaryGroupID"), "Domain Users")
}

func TestInChain(t *testing.T) {
	d := shared.Get(t)
	c := userConn(t, d, UserAlice)
	parent := ldap.EscapeFilter(d.GroupDN(GroupNestedParent))
	res := search(t, c, d.BaseDN, ldap.ScopeWholeSubtree, "(memberOf:1.2.840.113556.1.4.1941:="+parent+")")
	assert.ElementsMatch(t, []string{d.GroupDN(GroupNestedChild), d.UserDN(UserCarol)}, dns(res), "groups match too")
	res = search(t, c, d.BaseDN, ldap.ScopeWholeSubtree, "(&(objectCategory=person)(memberOf:1.2.840.113556.1.4.1941:="+parent+"))")
	assert.Equal(t, []string{d.UserDN(UserCarol)}, dns(res))
	res = search(t, c, d.BaseDN, ldap.ScopeWholeSubtree, "(&(objectCategory=person)(memberOf="+parent+"))")
	assert.Empty(t, res.Entries, "plain memberOf is not transitive")
	// The reverse: every group carol is in, transitively.
	res = search(t, c, d.BaseDN, ldap.ScopeWholeSubtree, "(member:1.2.840.113556.1.4.1941:="+ldap.EscapeFilter(d.UserDN(UserCarol))+")")
	assert.ElementsMatch(t, []string{d.GroupDN(GroupNestedChild), d.GroupDN(GroupNestedParent), d.GroupDN(GroupLogin)}, dns(res))
}

// Samba returns all values of a plain "member" (AD would stop at 1500 and
// return member;range=0-1499), and honours explicit ranges.
func TestRangedMembers(t *testing.T) {
	d := shared.Get(t)
	c := userConn(t, d, UserAlice)
	tests := []struct {
		attr, name string
		n          int
	}{
		{"member", "member", BigGroupSize},
		{"member;range=0-*", "member;range=0-*", BigGroupSize},
		{"member;range=0-1499", "member;range=0-1499", 1500},
		{"member;range=1500-*", "member;range=1500-*", BigGroupSize - 1500},
		{"member;range=1500-2999", "member;range=1500-*", BigGroupSize - 1500}, // the last chunk says *
	}
	for _, tt := range tests {
		t.Run(tt.attr, func(t *testing.T) {
			res := search(t, c, d.GroupDN(GroupBig), ldap.ScopeBaseObject, "(objectClass=*)", tt.attr)
			require.Len(t, res.Entries, 1)
			require.Len(t, res.Entries[0].Attributes, 1)
			a := res.Entries[0].Attributes[0]
			assert.Equal(t, tt.name, a.Name)
			assert.Len(t, a.Values, tt.n)
		})
	}
}

// grace's primary group is readers: primaryGroupID holds the RID of readers
// (its primaryGroupToken, and the last sub-authority of its objectSid),
// readers' member attribute no longer lists her, and Samba (like AD) made
// her an explicit member of her former primary group, Domain Users.
func TestPrimaryGroup(t *testing.T) {
	d := shared.Get(t)
	c := userConn(t, d, UserAlice)
	user := search(t, c, d.UserDN(UserGrace), ldap.ScopeBaseObject, "(objectClass=*)", "primaryGroupID", "memberOf", "objectSid").Entries[0]
	group := search(t, c, d.GroupDN(GroupReaders), ldap.ScopeBaseObject, "(objectClass=*)", "primaryGroupToken", "objectSid", "member").Entries[0]
	rid, err := RID(group.GetRawAttributeValue("objectSid"))
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(uint64(rid), 10), user.GetAttributeValue("primaryGroupID"))
	assert.Equal(t, user.GetAttributeValue("primaryGroupID"), group.GetAttributeValue("primaryGroupToken"))
	assert.Equal(t, []string{d.UserDN(UserAlice)}, group.GetAttributeValues("member"))
	assert.ElementsMatch(t, []string{d.GroupDN(GroupLogin), d.GroupDN("Domain Users")}, user.GetAttributeValues("memberOf"))
	// The user's SID and the group's share the domain prefix.
	usid, gsid := user.GetRawAttributeValue("objectSid"), group.GetRawAttributeValue("objectSid")
	assert.Equal(t, usid[:len(usid)-4], gsid[:len(gsid)-4])
	// primaryGroupToken is constructed: it cannot be searched for.
	res := search(t, c, d.BaseDN, ldap.ScopeWholeSubtree, "(primaryGroupToken="+group.GetAttributeValue("primaryGroupToken")+")")
	assert.Empty(t, res.Entries)
	res = search(t, c, d.BaseDN, ldap.ScopeWholeSubtree, "(&(objectCategory=group)(objectSid="+ldap.EscapeFilter(string(gsid))+"))")
	assert.Equal(t, []string{d.GroupDN(GroupReaders)}, dns(res), "a group is found by its binary objectSid")
}

// Paging works; Samba also returns more than 1000 entries without paging
// (AD's MaxPageSize would stop at 1000 with sizeLimitExceeded).
func TestPaging(t *testing.T) {
	d := shared.Get(t)
	c := userConn(t, d, UserAlice)
	req := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(d.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(&(objectCategory=person)(objectClass=user))", []string{"sAMAccountName"}, nil)
	}
	paged, err := c.SearchWithPaging(req(), 100)
	require.NoError(t, err)
	plain, err := c.Search(req())
	require.NoError(t, err)
	assert.Greater(t, len(paged.Entries), BigGroupSize)
	assert.ElementsMatch(t, dns(plain), dns(paged))
}

func TestDisabledFilter(t *testing.T) {
	d := shared.Get(t)
	res := search(t, userConn(t, d, UserAlice), d.BaseDN, ldap.ScopeWholeSubtree,
		"(&(objectCategory=person)(memberOf="+ldap.EscapeFilter(d.GroupDN(GroupLogin))+")(!(userAccountControl:1.2.840.113556.1.4.803:=2)))")
	got := dns(res)
	assert.NotContains(t, got, d.UserDN(UserDave))
	assert.Contains(t, got, d.UserDN(UserAlice))
	assert.Len(t, got, 11, "every member of ldapusers but dave")
}

func TestTLS(t *testing.T) {
	d := shared.Get(t)
	for _, server := range []string{"127.0.0.1", "localhost", FQDN} {
		t.Run("StartTLS "+server, func(t *testing.T) {
			c := d.Dial(t)
			cfg := d.TLSConfig()
			cfg.ServerName = server
			require.NoError(t, c.StartTLS(cfg))
			assert.NoError(t, c.Bind(d.DownLevel(UserAlice), d.Users[UserAlice]))
		})
	}
	t.Run("LDAPS", func(t *testing.T) {
		c, err := ldap.DialURL(d.LDAPSURL, ldap.DialWithTLSConfig(d.TLSConfig()))
		require.NoError(t, err)
		defer c.Close()
		assert.NoError(t, c.Bind(d.UPN(UserAlice), d.Users[UserAlice]))
	})
	wrong := x509.NewCertPool()
	pem, err := os.ReadFile(d.WrongCAFile)
	require.NoError(t, err)
	require.True(t, wrong.AppendCertsFromPEM(pem))
	var unknown x509.UnknownAuthorityError
	t.Run("LDAPS wrong CA", func(t *testing.T) {
		_, err := ldap.DialURL(d.LDAPSURL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: wrong, ServerName: "127.0.0.1"}))
		assert.True(t, errors.As(err, &unknown), "%v", err)
	})
	// go-ldap v3.4.15's StartTLS formats the handshake error with %v
	// (conn.go), so the x509 error cannot be unwrapped: only the code and
	// the text remain. ldapauth must do its own handshake to use errors.As.
	t.Run("StartTLS wrong CA", func(t *testing.T) {
		err := d.Dial(t).StartTLS(&tls.Config{RootCAs: wrong, ServerName: "127.0.0.1"})
		assert.True(t, ldap.IsErrorWithCode(err, ldap.ErrorNetwork), "%v", err)
		assert.False(t, errors.As(err, &unknown), "go-ldap now wraps the x509 error: update ldapauth")
		assert.ErrorContains(t, err, "x509: certificate signed by unknown authority")
	})
	t.Run("StartTLS wrong name", func(t *testing.T) {
		cfg := d.TLSConfig()
		cfg.ServerName = "dc2.ldapauth.test"
		err := d.Dial(t).StartTLS(cfg)
		assert.True(t, ldap.IsErrorWithCode(err, ldap.ErrorNetwork), "%v", err)
		assert.ErrorContains(t, err, "not dc2.ldapauth.test")
	})
}

func TestAdminAndTool(t *testing.T) {
	d := shared.Get(t)
	a := d.Admin(t)
	req := ldap.NewAddRequest(d.UserDN("tooltest"), nil)
	req.Attribute("objectClass", []string{"user"})
	req.Attribute("sAMAccountName", []string{"tooltest"})
	req.Attribute("unicodePwd", []string{UnicodePwd("Tool-Test-Pw-1")})
	req.Attribute("userAccountControl", []string{"512"})
	require.NoError(t, a.Add(req))
	assert.NoError(t, d.Dial(t).Bind(d.DownLevel("tooltest"), "Tool-Test-Pw-1"))

	out := d.Tool(t, "user", "show", "tooltest")
	assert.Contains(t, out, "sAMAccountName: tooltest")
	d.Tool(t, "user", "disable", "tooltest")
	assert.Equal(t, "533", dataCode(t, d, d.DownLevel("tooltest"), "Tool-Test-Pw-1"), "samba-tool changes are live")
	d.Tool(t, "user", "delete", "tooltest")
	assert.Equal(t, "52e", dataCode(t, d, d.DownLevel("tooltest"), "Tool-Test-Pw-1"))
}

func TestRID(t *testing.T) {
	_, err := RID([]byte{1, 2, 3})
	assert.Error(t, err)
	rid, err := RID([]byte{1, 2, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xe9, 0x03, 0, 0})
	require.NoError(t, err)
	assert.Equal(t, uint32(1001), rid)
}
