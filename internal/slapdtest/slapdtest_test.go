package slapdtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

func TestMain(m *testing.M) { os.Exit(slapdtest.Run(m)) }

// search runs a subtree search for attrs under base and returns the result
// and the error as go-ldap gives them (partial results included).
func search(conn *ldap.Conn, base, filter string, attrs ...string) (*ldap.SearchResult, error) {
	return conn.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, filter, attrs, nil))
}

func resultCode(t *testing.T, err error) uint16 {
	t.Helper()
	var lerr *ldap.Error
	require.ErrorAs(t, err, &lerr)
	return lerr.ResultCode
}

// policyControl binds dn with the password policy request control and
// returns the bind error and the policy response, if any.
func policyBind(t *testing.T, conn *ldap.Conn, dn, password string) (error, *ldap.ControlBeheraPasswordPolicy) {
	t.Helper()
	res, err := conn.SimpleBind(&ldap.SimpleBindRequest{
		Username: dn, Password: password,
		Controls: []ldap.Control{ldap.NewControlBeheraPasswordPolicy()},
	})
	if res == nil {
		return err, nil
	}
	c, _ := ldap.FindControl(res.Controls, ldap.ControlTypeBeheraPasswordPolicy).(*ldap.ControlBeheraPasswordPolicy)
	return err, c
}

func TestBind(t *testing.T) {
	srv := slapdtest.Start(t)
	tests := []struct {
		name, dn, password string
		code               uint16 // 0: success
	}{
		{"alice", slapdtest.UserDN("alice"), "alice-password", 0},
		{"alice wrong password", slapdtest.UserDN("alice"), "wrong", ldap.LDAPResultInvalidCredentials},
		{"unknown user", slapdtest.UserDN("nobody"), "nobody-password", ldap.LDAPResultInvalidCredentials},
		{"bob", slapdtest.UserDN("bob"), slapdtest.Password("bob"), 0},
		{"carol", slapdtest.UserDN("carol"), slapdtest.Password("carol"), 0},
		{"non-ASCII uid", "uid=jürgen,ou=people,dc=example,dc=com", "jürgen-password", 0},
		{"escaped comma in uid", `uid=smith\, john,ou=people,dc=example,dc=com`, "smith, john-password", 0},
		{"escaped comma, hex form", `uid=smith\2C john,ou=people,dc=example,dc=com`, "smith, john-password", 0},
		{"service account", slapdtest.ServiceDN, slapdtest.ServicePassword, 0},
		{"admin", slapdtest.AdminDN, slapdtest.AdminPassword, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := srv.Dial(t).Bind(tt.dn, tt.password)
			if tt.code == 0 {
				assert.NoError(t, err)
			} else {
				assert.Equal(t, tt.code, resultCode(t, err))
			}
		})
	}

	t.Run("UserDN escapes", func(t *testing.T) {
		assert.Equal(t, `uid=smith\, john,ou=people,dc=example,dc=com`, slapdtest.UserDN("smith, john"))
		assert.Equal(t, "uid=jürgen,ou=people,dc=example,dc=com", slapdtest.UserDN("jürgen"))
	})
}

func TestAnonymousSearchRefused(t *testing.T) {
	srv := slapdtest.Start(t)

	t.Run("without bind", func(t *testing.T) {
		_, err := search(srv.Dial(t), slapdtest.BaseDN, "(uid=alice)")
		assert.Equal(t, uint16(ldap.LDAPResultUnwillingToPerform), resultCode(t, err))
	})
	t.Run("after anonymous bind", func(t *testing.T) {
		conn := srv.Dial(t)
		require.NoError(t, conn.UnauthenticatedBind(""))
		_, err := search(conn, slapdtest.PeopleDN, "(objectClass=*)")
		assert.Equal(t, uint16(ldap.LDAPResultUnwillingToPerform), resultCode(t, err))
	})
	t.Run("root DSE stays readable", func(t *testing.T) {
		res, err := srv.Dial(t).Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", []string{"supportedExtension"}, nil))
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		assert.Contains(t, res.Entries[0].GetAttributeValues("supportedExtension"), "1.3.6.1.4.1.1466.20037") // StartTLS
	})
}

func TestUserAccess(t *testing.T) {
	srv := slapdtest.Start(t)
	alice := srv.Conn(t, slapdtest.UserDN("alice"), "alice-password")

	t.Run("own entry with memberOf, as the login search", func(t *testing.T) {
		res, err := search(alice, slapdtest.PeopleDN,
			"(&(uid=alice)(objectClass=inetOrgPerson)(memberOf=cn=ldapusers,ou=groups,dc=example,dc=com))",
			"uid", "cn", "sn", "givenName", "mail", "memberOf")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		e := res.Entries[0]
		assert.Equal(t, slapdtest.UserDN("alice"), e.DN)
		assert.Equal(t, "Alice Liddell", e.GetAttributeValue("cn"))
		assert.Equal(t, "alice@example.com", e.GetAttributeValue("mail"))
		assert.ElementsMatch(t, []string{slapdtest.GroupDN("ldapusers"), slapdtest.GroupDN("readers")},
			e.GetAttributeValues("memberOf"))
	})
	t.Run("other users invisible", func(t *testing.T) {
		res, err := search(alice, slapdtest.PeopleDN, "(uid=bob)")
		require.NoError(t, err)
		assert.Empty(t, res.Entries)
	})
	t.Run("groups readable, nested group included", func(t *testing.T) {
		res, err := search(alice, slapdtest.GroupsDN, "(objectClass=groupOfNames)", "cn", "member")
		require.NoError(t, err)
		members := map[string][]string{}
		for _, e := range res.Entries {
			members[e.GetAttributeValue("cn")] = e.GetAttributeValues("member")
		}
		assert.ElementsMatch(t, []string{"ldapusers", "readers", "marvel", "nested-parent", "nested-child"}, keys(members))
		assert.Equal(t, []string{slapdtest.GroupDN("nested-child")}, members["nested-parent"])
		assert.Equal(t, []string{slapdtest.UserDN("carol")}, members["nested-child"])
		assert.Contains(t, members["ldapusers"], `uid=smith\, john,ou=people,dc=example,dc=com`)
	})
	t.Run("own password not readable by others", func(t *testing.T) {
		svc := srv.Conn(t, slapdtest.ServiceDN, slapdtest.ServicePassword)
		res, err := search(svc, slapdtest.PeopleDN, "(uid=alice)", "userPassword", "cn")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		assert.Empty(t, res.Entries[0].GetAttributeValues("userPassword"))
		assert.Equal(t, "Alice Liddell", res.Entries[0].GetAttributeValue("cn"))
	})
	t.Run("seed passwords are hashed", func(t *testing.T) {
		res, err := search(srv.Admin(t), slapdtest.PeopleDN, "(uid=alice)", "userPassword")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		assert.Regexp(t, `^\{SSHA\}`, res.Entries[0].GetAttributeValue("userPassword"))
	})
	t.Run("memberOf of the nested member", func(t *testing.T) {
		svc := srv.Conn(t, slapdtest.ServiceDN, slapdtest.ServicePassword)
		res, err := search(svc, slapdtest.PeopleDN, "(uid=carol)", "memberOf")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		assert.ElementsMatch(t, []string{slapdtest.GroupDN("ldapusers"), slapdtest.GroupDN("marvel"), slapdtest.GroupDN("nested-child")},
			res.Entries[0].GetAttributeValues("memberOf"))
	})
}

func keys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestOverlaysLive shows that memberof and refint work on live changes
// (the seed's memberOf values are written by the helper, not the overlay).
func TestOverlaysLive(t *testing.T) {
	srv := slapdtest.Start(t)
	svc := srv.Conn(t, slapdtest.ServiceDN, slapdtest.ServicePassword)
	memberOf := func(uid string) []string {
		t.Helper()
		res, err := search(svc, slapdtest.PeopleDN, "(uid="+ldap.EscapeFilter(uid)+")", "memberOf")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		return res.Entries[0].GetAttributeValues("memberOf")
	}

	srv.AddMember(t, "readers", slapdtest.UserDN("carol"))
	assert.Contains(t, memberOf("carol"), slapdtest.GroupDN("readers"))
	srv.RemoveMember(t, "readers", slapdtest.UserDN("carol"))
	assert.NotContains(t, memberOf("carol"), slapdtest.GroupDN("readers"))

	dn := srv.AddUser(t, "frank", "frank-password", "ldapusers", "marvel")
	assert.ElementsMatch(t, []string{slapdtest.GroupDN("ldapusers"), slapdtest.GroupDN("marvel")}, memberOf("frank"))
	frank := srv.Dial(t)
	err, ctrl := policyBind(t, frank, dn, "frank-password")
	require.NoError(t, err, "a user added by the admin binds")
	if ctrl != nil {
		assert.Equal(t, int8(-1), ctrl.Error, "and need not change the password first")
	}
	res, err := search(frank, slapdtest.PeopleDN, "(uid=frank)", "memberOf")
	require.NoError(t, err, "and runs the login search as himself")
	require.Len(t, res.Entries, 1)

	srv.DeleteUser(t, "frank")
	res, err = search(svc, slapdtest.GroupsDN, "(member="+ldap.EscapeFilter(dn)+")", "cn")
	require.NoError(t, err)
	assert.Empty(t, res.Entries, "refint removed the deleted user from its groups")
}

func TestTLS(t *testing.T) {
	srv := slapdtest.Start(t)

	// A client configured from CAFile, as ldapauth will be.
	pem, err := os.ReadFile(srv.CAFile)
	require.NoError(t, err)
	fromFile := x509.NewCertPool()
	require.True(t, fromFile.AppendCertsFromPEM(pem))
	caFileConfig := &tls.Config{RootCAs: fromFile, ServerName: "127.0.0.1"}

	wrongPEM, err := os.ReadFile(srv.WrongCAFile)
	require.NoError(t, err)
	wrongPool := x509.NewCertPool()
	require.True(t, wrongPool.AppendCertsFromPEM(wrongPEM))
	wrongFileConfig := &tls.Config{RootCAs: wrongPool, ServerName: "127.0.0.1"}

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{{"CAFile", caFileConfig}, {"TLSConfig", srv.TLSConfig()}} {
		t.Run("StartTLS with "+tc.name, func(t *testing.T) {
			conn := srv.Dial(t)
			require.NoError(t, conn.StartTLS(tc.cfg))
			state, ok := conn.TLSConnectionState()
			require.True(t, ok)
			assert.NotEmpty(t, state.VerifiedChains)
			assert.NoError(t, conn.Bind(slapdtest.UserDN("alice"), "alice-password"))
		})
		t.Run("LDAPS with "+tc.name, func(t *testing.T) {
			conn, err := ldap.DialURL(srv.LDAPSURL, ldap.DialWithTLSConfig(tc.cfg))
			require.NoError(t, err)
			defer conn.Close()
			assert.NoError(t, conn.Bind(slapdtest.UserDN("alice"), "alice-password"))
		})
	}

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{{"WrongCAFile", wrongFileConfig}, {"WrongTLSConfig", srv.WrongTLSConfig()}} {
		t.Run("StartTLS with "+tc.name, func(t *testing.T) {
			// go-ldap's StartTLS flattens the handshake error into its
			// message (%v), so only the text tells the cause.
			err := srv.Dial(t).StartTLS(tc.cfg)
			assert.Equal(t, uint16(ldap.ErrorNetwork), resultCode(t, err))
			assert.ErrorContains(t, err, "certificate signed by unknown authority")
		})
		t.Run("LDAPS with "+tc.name, func(t *testing.T) {
			conn, err := ldap.DialURL(srv.LDAPSURL, ldap.DialWithTLSConfig(tc.cfg))
			if err == nil {
				// Go's TLS 1.3 client reports a bad server certificate
				// during the handshake, which go-ldap runs at the first
				// request when it dials.
				defer conn.Close()
				err = conn.Bind(slapdtest.UserDN("alice"), "alice-password")
			}
			var unknown x509.UnknownAuthorityError
			assert.ErrorAs(t, err, &unknown)
		})
	}

	t.Run("wrong host name", func(t *testing.T) {
		cfg := srv.TLSConfig()
		cfg.ServerName = "ldap.example.com"
		err := srv.Dial(t).StartTLS(cfg)
		assert.Equal(t, uint16(ldap.ErrorNetwork), resultCode(t, err))
		assert.ErrorContains(t, err, "not ldap.example.com")
	})
}

func TestPasswordPolicy(t *testing.T) {
	srv := slapdtest.Start(t)

	t.Run("lockout after MaxFailures wrong passwords", func(t *testing.T) {
		dn := slapdtest.UserDN(slapdtest.LockoutUser)
		for i := range slapdtest.MaxFailures {
			err, _ := policyBind(t, srv.Dial(t), dn, "wrong")
			require.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), resultCode(t, err), "wrong password %d", i+1)
		}
		// slapd answers the MaxFailures-th wrong password before the lock
		// it writes is visible to the next bind: under load the right
		// password could still get in. Wait for the stored lock.
		srv.WaitLocked(t, dn)
		// Even then, under load, a bind has been seen to get through once:
		// wait for the lock to take effect on binds too.
		var err error
		var ctrl *ldap.ControlBeheraPasswordPolicy
		slapdtest.WaitFor(t, 30*time.Second, func() error {
			conn, derr := ldap.DialURL(srv.URL)
			if derr != nil {
				return derr
			}
			defer conn.Close()
			err, ctrl = policyBind(t, conn, dn, slapdtest.Password(slapdtest.LockoutUser))
			if ctrl == nil || ctrl.Error != ldap.BeheraAccountLocked {
				return slapdtest.NotYet("slapd has not refused the locked account's bind: %v, policy control %+v", err, ctrl)
			}
			return nil
		})
		assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), resultCode(t, err), "the right password is refused too")
		require.NotNil(t, ctrl, "password policy response control")
		assert.Equal(t, int8(ldap.BeheraAccountLocked), ctrl.Error)
		assert.Equal(t, "Account locked", ctrl.ErrorString)

		srv.Unlock(t, dn)
		err, ctrl = policyBind(t, srv.Dial(t), dn, slapdtest.Password(slapdtest.LockoutUser))
		require.NoError(t, err)
		if ctrl != nil {
			assert.Equal(t, int8(-1), ctrl.Error, "no policy error after Unlock")
		}
	})

	t.Run("pwdReset forces a change", func(t *testing.T) {
		dn := slapdtest.UserDN(slapdtest.ResetUser)
		srv.ForcePasswordReset(t, dn)

		conn := srv.Dial(t)
		err, ctrl := policyBind(t, conn, dn, slapdtest.Password(slapdtest.ResetUser))
		require.NoError(t, err, "the bind itself succeeds")
		require.NotNil(t, ctrl, "password policy response control")
		assert.Equal(t, int8(ldap.BeheraChangeAfterReset), ctrl.Error)
		assert.Equal(t, "Password must be changed", ctrl.ErrorString)

		// slapd 2.5 answers insufficientAccess, "Operations are restricted
		// to bind/unbind/abandon/StartTLS/modify password".
		_, err = search(conn, slapdtest.PeopleDN, "(uid=erin)")
		assert.Equal(t, uint16(ldap.LDAPResultInsufficientAccessRights), resultCode(t, err), "nothing but a password change")

		_, err = conn.PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.Password(slapdtest.ResetUser), "erin-new-password"))
		require.NoError(t, err)

		err, ctrl = policyBind(t, srv.Dial(t), dn, "erin-new-password")
		require.NoError(t, err)
		if ctrl != nil {
			assert.Equal(t, int8(-1), ctrl.Error, "no policy error after the change")
		}
	})

	t.Run("SetPassword needs no change", func(t *testing.T) {
		dn := slapdtest.UserDN("bob")
		srv.SetPassword(t, dn, "bob-new-password")
		conn := srv.Dial(t)
		err, ctrl := policyBind(t, conn, dn, "bob-new-password")
		require.NoError(t, err)
		if ctrl != nil {
			assert.Equal(t, int8(-1), ctrl.Error)
		}
		_, err = search(conn, slapdtest.PeopleDN, "(uid=bob)")
		assert.NoError(t, err)
	})
}

func TestSizeLimitAndPaging(t *testing.T) {
	const generated = 1200
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: generated, GeneratedUserGroups: []string{"ldapusers"}})
	const seedUsers = 7
	const filter = "(objectClass=inetOrgPerson)"
	req := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(slapdtest.PeopleDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, filter, []string{"uid"}, nil)
	}

	t.Run("svc pages past the default limit", func(t *testing.T) {
		svc := srv.Conn(t, slapdtest.ServiceDN, slapdtest.ServicePassword)
		res, err := svc.SearchWithPaging(req(), 100)
		require.NoError(t, err)
		assert.Len(t, res.Entries, generated+seedUsers)
	})
	t.Run("svc has no size limit unpaged either", func(t *testing.T) {
		svc := srv.Conn(t, slapdtest.ServiceDN, slapdtest.ServicePassword)
		res, err := svc.Search(req())
		require.NoError(t, err)
		assert.Len(t, res.Entries, generated+seedUsers)
	})
	t.Run("default limit unpaged", func(t *testing.T) {
		conn := srv.Conn(t, slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword)
		res, err := conn.Search(req())
		assert.Equal(t, uint16(ldap.LDAPResultSizeLimitExceeded), resultCode(t, err))
		assert.Len(t, res.Entries, slapdtest.DefaultSizeLimit)
	})
	t.Run("default limit caps paging too", func(t *testing.T) {
		conn := srv.Conn(t, slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword)
		res, err := conn.SearchWithPaging(req(), 100)
		assert.Equal(t, uint16(ldap.LDAPResultSizeLimitExceeded), resultCode(t, err))
		assert.LessOrEqual(t, len(res.Entries), slapdtest.DefaultSizeLimit)
	})
	t.Run("paging refused", func(t *testing.T) {
		conn := srv.Conn(t, slapdtest.NoPagingServiceDN, slapdtest.NoPagingServicePassword)
		_, err := conn.SearchWithPaging(req(), 100)
		assert.Equal(t, uint16(ldap.LDAPResultAdminLimitExceeded), resultCode(t, err))
		res, err := conn.Search(req())
		require.NoError(t, err)
		assert.Len(t, res.Entries, generated+seedUsers)
	})
	t.Run("generated user", func(t *testing.T) {
		uid := slapdtest.GeneratedUID(generated)
		conn := srv.Conn(t, slapdtest.UserDN(uid), slapdtest.GeneratedPassword)
		res, err := search(conn, slapdtest.PeopleDN, "(uid="+uid+")", "cn", "mail", "memberOf")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		assert.Equal(t, "Generated User 001200", res.Entries[0].GetAttributeValue("cn"))
		assert.Equal(t, "user001200@example.com", res.Entries[0].GetAttributeValue("mail"))
		assert.Equal(t, []string{slapdtest.GroupDN("ldapusers")}, res.Entries[0].GetAttributeValues("memberOf"))
	})
	t.Run("generated members of the group", func(t *testing.T) {
		svc := srv.Conn(t, slapdtest.ServiceDN, slapdtest.ServicePassword)
		res, err := search(svc, slapdtest.GroupsDN, "(cn=ldapusers)", "member")
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		assert.Len(t, res.Entries[0].GetAttributeValues("member"), generated+4)
	})
}

func TestRestart(t *testing.T) {
	srv := slapdtest.Start(t)
	url, ldapsURL := srv.URL, srv.LDAPSURL
	old := srv.Conn(t, slapdtest.UserDN("alice"), "alice-password")
	dn := srv.AddUser(t, "grace", "grace-password", "readers")

	srv.Restart(t)

	assert.Equal(t, url, srv.URL)
	assert.Equal(t, ldapsURL, srv.LDAPSURL)
	_, err := search(old, slapdtest.PeopleDN, "(uid=alice)")
	assert.Error(t, err, "connections do not survive a restart")
	assert.NoError(t, srv.Dial(t).Bind(dn, "grace-password"), "data survives a restart")
	conn, err := ldap.DialURL(srv.LDAPSURL, ldap.DialWithTLSConfig(srv.TLSConfig()))
	require.NoError(t, err)
	defer conn.Close()
	assert.NoError(t, conn.Bind(slapdtest.UserDN("alice"), "alice-password"))
}

func TestStop(t *testing.T) {
	srv := slapdtest.Start(t)
	addr := srv.URL[len("ldap://"):]
	srv.Stop()

	_, err := os.Stat(srv.Dir)
	assert.True(t, errors.Is(err, os.ErrNotExist), "Stop removes Dir")
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	assert.Error(t, err, "nothing listens after Stop")
	srv.Stop() // a second Stop (as the test cleanup does) is harmless
}

// BenchmarkStart measures a server's start, bulk load included, and its
// stop: go test -run=^$ -bench=Start -benchtime=1x ./internal/slapdtest/
func BenchmarkStart(b *testing.B) {
	for _, n := range []int{0, 5_000, 100_000} {
		b.Run("users="+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				srv := slapdtest.StartWith(b, slapdtest.Options{GeneratedUsers: n, GeneratedUserGroups: []string{"ldapusers"}, LogLevel: "0"})
				srv.Stop()
			}
		})
	}
}
