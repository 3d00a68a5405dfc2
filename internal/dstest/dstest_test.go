package dstest

import (
	"errors"
	"os"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func search(t *testing.T, c *ldap.Conn, base, filter string, attrs ...string) []*ldap.Entry {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	if err != nil {
		t.Fatalf("search %s %s: %v", base, filter, err)
	}
	return res.Entries
}

func TestSeed(t *testing.T) {
	s := Shared(t)
	c := s.Conn(t, ServiceDN, ServicePassword)
	// memberOf lists nested groups, for member and uniqueMember alike.
	for uid, want := range map[string][]string{
		"carol": {GroupDN("ldapusers"), GroupDN("marvel"), GroupDN("nested-child"), GroupDN("nested-parent")},
		"gina":  {GroupDN("unique-child"), GroupDN("unique-parent")},
	} {
		e := search(t, c, UserDN(uid), "(objectClass=*)", "memberOf")
		got := map[string]bool{}
		for _, g := range e[0].GetAttributeValues("memberOf") {
			got[g] = true
		}
		for _, g := range want {
			if !got[g] {
				t.Errorf("%s memberOf %v lacks %s", uid, e[0].GetAttributeValues("memberOf"), g)
			}
		}
	}
	// Users read their own entry, not passwords.
	alice := s.Conn(t, UserDN("alice"), Password("alice"))
	e := search(t, alice, UserDN("alice"), "(objectClass=*)", "uid", "userPassword")
	if e[0].GetAttributeValue("uid") != "alice" || e[0].GetAttributeValue("userPassword") != "" {
		t.Errorf("alice reads her entry as %v", e[0].Attributes)
	}
	// The disabled user's bind is refused: 53.
	err := s.Conn(t, "", "").Bind(UserDN(DisabledUser), Password(DisabledUser))
	var lerr *ldap.Error
	if !errors.As(err, &lerr) || lerr.ResultCode != ldap.LDAPResultUnwillingToPerform {
		t.Errorf("disabled bind: %v", err)
	}
}

func TestLockAndUnlock(t *testing.T) {
	s := Shared(t)
	uid := TempName("locktest")
	dn := s.AddUser(t, uid, Password(uid))
	s.Lock(t, dn, Password(uid))
	s.Unlock(t, dn)
	if err := s.Conn(t, "", "").Bind(dn, Password(uid)); err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
}

func TestTLS(t *testing.T) {
	s := Shared(t)
	c, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(s.TLSConfig()))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = s.Conn(t, "", "")
	if err := c.StartTLS(s.TLSConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := ldap.DialURL(s.LDAPSURL, ldap.DialWithTLSConfig(s.WrongTLSConfig())); err == nil {
		t.Fatal("the unrelated CA verified the server")
	}
}
