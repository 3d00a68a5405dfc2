package dstest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// seedUser is a user of the seed.
type seedUser struct {
	uid, cn, sn, givenName, mail string
	extra                        map[string][]string
}

var seedUsers = []seedUser{
	{uid: "alice", cn: "Alice Liddell", sn: "Liddell", givenName: "Alice", mail: "alice@example.com"},
	{uid: "bob", cn: "Bob Builder", sn: "Builder", givenName: "Bob", mail: "bob@example.com"},
	{uid: "carol", cn: "Carol Danvers", sn: "Danvers", givenName: "Carol", mail: "carol@example.com"},
	{uid: "jürgen", cn: "Jürgen Groß", sn: "Groß", givenName: "Jürgen", mail: "juergen.gross@example.com"},
	{uid: "smith, john", cn: "John Smith", sn: "Smith", givenName: "John", mail: "john.smith@example.com"},
	{uid: DisabledUser, cn: "Frank Frozen", sn: "Frozen", givenName: "Frank", mail: "frank@example.com",
		extra: map[string][]string{"nsAccountLock": {"true"}}},
	{uid: "gina", cn: "Gina Unique", sn: "Unique", givenName: "Gina", mail: "gina@example.com"},
}

// seedGroups are added in order, so a group holding a group comes after it.
var seedGroups = []struct {
	cn      string
	unique  bool
	members []string // DNs
}{
	{cn: "ldapusers", members: []string{UserDN("alice"), UserDN("carol"), UserDN("jürgen"), UserDN("smith, john"), UserDN(DisabledUser)}},
	{cn: "readers", members: []string{UserDN("alice"), UserDN("bob")}},
	{cn: "marvel", members: []string{UserDN("bob"), UserDN("carol")}},
	{cn: "nested-child", members: []string{UserDN("carol")}},
	{cn: "nested-parent", members: []string{GroupDN("nested-child")}},
	{cn: "staff", unique: true, members: []string{UserDN("alice")}},
	{cn: "unique-child", unique: true, members: []string{UserDN("gina")}},
	{cn: "unique-parent", unique: true, members: []string{GroupDN("unique-child")}},
}

// seed adds the seed over LDAP, as the root DN, so the memberOf plugin
// writes memberOf.
func (s *Server) seed(opts Options) error {
	conn, err := s.dial()
	if err != nil {
		return fmt.Errorf("dstest: seed: %w", err)
	}
	defer conn.Close()
	if err := conn.Bind(AdminDN, AdminPassword); err != nil {
		return fmt.Errorf("dstest: seed: %w", err)
	}
	aci := ldap.NewModifyRequest(BaseDN, nil)
	aci.Add("aci", []string{
		`(targetattr!="userPassword")(version 3.0; acl "dstest: authenticated users read all but passwords"; allow (read, search, compare) userdn="ldap:///all";)`,
		`(targetattr="userPassword")(version 3.0; acl "dstest: users change their password"; allow (write) userdn="ldap:///self";)`,
	})
	if err := conn.Modify(aci); err != nil {
		return fmt.Errorf("dstest: seed: access rules: %w", err)
	}
	var adds []*ldap.AddRequest
	for _, ou := range []string{"people", "groups", "services"} {
		r := ldap.NewAddRequest("ou="+ou+","+BaseDN, nil)
		r.Attribute("objectClass", []string{"top", "organizationalUnit"})
		r.Attribute("ou", []string{ou})
		adds = append(adds, r)
	}
	svc := ldap.NewAddRequest(ServiceDN, nil)
	svc.Attribute("objectClass", []string{"top", "applicationProcess", "simpleSecurityObject"})
	svc.Attribute("cn", []string{"svc"})
	svc.Attribute("description", []string{"Service account for searches and the group sync"})
	svc.Attribute("userPassword", []string{hashSSHA(ServicePassword)})
	adds = append(adds, svc)
	for _, u := range seedUsers {
		r := userAdd(u.uid, u.cn, u.sn, u.givenName, u.mail, hashSSHA(Password(u.uid)))
		for k, v := range u.extra {
			r.Attribute(k, v)
		}
		adds = append(adds, r)
	}
	hash := hashSSHA(GeneratedPassword)
	var generated []string
	for i := 1; i <= opts.GeneratedUsers; i++ {
		uid := GeneratedUID(i)
		n := uid[len("user"):]
		adds = append(adds, userAdd(uid, "Generated User "+n, "User"+n, "Generated", uid+"@example.com", hash))
		generated = append(generated, UserDN(uid))
	}
	for _, g := range seedGroups {
		members := g.members
		if g.cn == "ldapusers" {
			members = append(members, generated...)
		}
		adds = append(adds, groupAdd(g.cn, g.unique, members))
	}
	for _, r := range adds {
		if err := conn.Add(r); err != nil {
			return fmt.Errorf("dstest: seed: add %s: %w", r.DN, err)
		}
	}
	// With passwordMustChange on, every password the root DN sets must be
	// changed by its user (passwordExpirationTime 19700101000000Z): not
	// the seed's. (The setting turned on over LDAP after the seed marks
	// passwords but is not enforced on binds until a restart.)
	for _, r := range adds {
		if !hasPassword(r) {
			continue
		}
		if err := conn.Modify(clearMustChange(r.DN)); err != nil {
			return fmt.Errorf("dstest: seed: %s: %w", r.DN, err)
		}
	}
	return nil
}

func hasPassword(r *ldap.AddRequest) bool {
	for _, a := range r.Attributes {
		if a.Type == "userPassword" {
			return true
		}
	}
	return false
}

// clearMustChange clears the must-change mark of dn's password.
func clearMustChange(dn string) *ldap.ModifyRequest {
	m := ldap.NewModifyRequest(dn, nil)
	m.Replace("passwordExpirationTime", []string{farFuture})
	return m
}

// farFuture is a passwordExpirationTime that clears a must-change mark.
const farFuture = "20991231235959Z"

func userAdd(uid, cn, sn, givenName, mail, password string) *ldap.AddRequest {
	r := ldap.NewAddRequest(UserDN(uid), nil)
	r.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson"})
	r.Attribute("uid", []string{uid})
	r.Attribute("cn", []string{cn})
	r.Attribute("sn", []string{sn})
	r.Attribute("givenName", []string{givenName})
	r.Attribute("mail", []string{mail})
	r.Attribute("userPassword", []string{password})
	return r
}

func groupAdd(cn string, unique bool, members []string) *ldap.AddRequest {
	r := ldap.NewAddRequest(GroupDN(cn), nil)
	r.Attribute("cn", []string{cn})
	if unique {
		r.Attribute("objectClass", []string{"top", "groupOfUniqueNames"})
		if len(members) > 0 {
			r.Attribute("uniqueMember", members)
		}
	} else {
		r.Attribute("objectClass", []string{"top", "groupOfNames"})
		if len(members) > 0 {
			r.Attribute("member", members)
		}
	}
	return r
}

// hashSSHA returns password as a {SSHA} hash, which the root DN may store
// as it is: the server neither re-hashes it nor marks it for a change.
func hashSSHA(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}

var tempNames atomic.Int64

// TempName returns prefix followed by a number unique within the test
// binary, so -count=N runs and shared servers never collide.
func TempName(prefix string) string { return fmt.Sprintf("%s%d", prefix, tempNames.Add(1)) }

// AddUser adds an inetOrgPerson uid to ou=people (cn, sn uid; mail
// uid@example.com) with password, makes it a member of groups (cn values,
// member or uniqueMember as the group's class says), deletes it when the
// test ends, and returns its DN. The memberOf plugin writes its memberOf.
func (s *Server) AddUser(tb testing.TB, uid, password string, groups ...string) string {
	tb.Helper()
	conn := s.Admin(tb)
	dn := UserDN(uid)
	if err := conn.Add(userAdd(uid, uid, uid, uid, uid+"@example.com", hashSSHA(password))); err != nil {
		tb.Fatalf("dstest: add %s: %v", dn, err)
	}
	if err := conn.Modify(clearMustChange(dn)); err != nil { // the password need not be changed
		tb.Fatalf("dstest: add %s: %v", dn, err)
	}
	tb.Cleanup(func() {
		if c, err := s.dial(); err == nil {
			defer c.Close()
			if c.Bind(AdminDN, AdminPassword) == nil {
				_ = c.Del(ldap.NewDelRequest(dn, nil))
			}
		}
	})
	for _, g := range groups {
		s.AddMember(tb, g, dn)
	}
	return dn
}

// AddGroup adds a group cn to ou=groups, a groupOfUniqueNames when unique
// (else a groupOfNames), with members (DNs), deletes it when the test
// ends, and returns its DN.
func (s *Server) AddGroup(tb testing.TB, cn string, unique bool, members ...string) string {
	tb.Helper()
	conn := s.Admin(tb)
	if err := conn.Add(groupAdd(cn, unique, members)); err != nil {
		tb.Fatalf("dstest: add group %s: %v", cn, err)
	}
	dn := GroupDN(cn)
	tb.Cleanup(func() {
		if c, err := s.dial(); err == nil {
			defer c.Close()
			if c.Bind(AdminDN, AdminPassword) == nil {
				_ = c.Del(ldap.NewDelRequest(dn, nil))
			}
		}
	})
	return dn
}

// DeleteEntry deletes dn; referential integrity removes it from groups.
func (s *Server) DeleteEntry(tb testing.TB, dn string) {
	tb.Helper()
	if err := s.Admin(tb).Del(ldap.NewDelRequest(dn, nil)); err != nil {
		tb.Fatalf("dstest: delete %s: %v", dn, err)
	}
}

// memberAttr is the member attribute of the group cn.
func (s *Server) memberAttr(tb testing.TB, conn *ldap.Conn, cn string) string {
	tb.Helper()
	res, err := conn.Search(ldap.NewSearchRequest(GroupDN(cn), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=groupOfUniqueNames)", []string{"1.1"}, nil))
	if err != nil {
		tb.Fatalf("dstest: read group %s: %v", cn, err)
	}
	if len(res.Entries) > 0 {
		return "uniqueMember"
	}
	return "member"
}

// AddMember adds memberDN to the group cn; the memberOf plugin adds the
// group, and the groups above it, to the member's memberOf.
func (s *Server) AddMember(tb testing.TB, group, memberDN string) {
	tb.Helper()
	conn := s.Admin(tb)
	req := ldap.NewModifyRequest(GroupDN(group), nil)
	req.Add(s.memberAttr(tb, conn, group), []string{memberDN})
	if err := conn.Modify(req); err != nil {
		tb.Fatalf("dstest: add %s to %s: %v", memberDN, group, err)
	}
}

// RemoveMember removes memberDN from the group cn.
func (s *Server) RemoveMember(tb testing.TB, group, memberDN string) {
	tb.Helper()
	conn := s.Admin(tb)
	req := ldap.NewModifyRequest(GroupDN(group), nil)
	req.Delete(s.memberAttr(tb, conn, group), []string{memberDN})
	if err := conn.Modify(req); err != nil {
		tb.Fatalf("dstest: remove %s from %s: %v", memberDN, group, err)
	}
}

// Modify replaces attributes of dn as the root DN: name, values pairs; no
// values deletes the attribute.
func (s *Server) Modify(tb testing.TB, dn string, attr string, values ...string) {
	tb.Helper()
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace(attr, values)
	if err := s.Admin(tb).Modify(req); err != nil {
		tb.Fatalf("dstest: modify %s %s: %v", dn, attr, err)
	}
}

// Disable sets nsAccountLock to value (for example "true" or "TRUE") on
// dn, as ipa user-disable and dsidm account lock do.
func (s *Server) Disable(tb testing.TB, dn, value string) { s.Modify(tb, dn, "nsAccountLock", value) }

// Lock makes MaxFailures wrong-password binds as dn, which the policy
// answers by locking the account, and waits until a bind with the right
// password is refused for the lock.
func (s *Server) Lock(tb testing.TB, dn, password string) {
	tb.Helper()
	conn := s.Conn(tb, "", "")
	for range MaxFailures {
		if err := conn.Bind(dn, "wrong-password"); err == nil {
			tb.Fatalf("dstest: a wrong password logged %s in", dn)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := conn.Bind(dn, password)
		if ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dstest: %s is not locked after %d wrong passwords: %v", dn, MaxFailures, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Unlock clears the lockout and the failure count of dn.
func (s *Server) Unlock(tb testing.TB, dn string) {
	tb.Helper()
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("passwordRetryCount", []string{"0"})
	req.Replace("accountUnlockTime", nil)
	if err := s.Admin(tb).Modify(req); err != nil {
		tb.Fatalf("dstest: unlock %s: %v", dn, err)
	}
}

// SetPassword sets the password of dn as an administrator, which the
// policy (passwordMustChange) answers by requiring the user to change it:
// the next bind succeeds with the password policy's changeAfterReset. 389-DS
// has been seen to answer a bind just after the change without it, so
// SetPassword waits until a bind says so.
func (s *Server) SetPassword(tb testing.TB, dn, password string) {
	tb.Helper()
	s.Modify(tb, dn, "userPassword", password)
	conn := s.Conn(tb, "", "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := conn.SimpleBind(&ldap.SimpleBindRequest{Username: dn, Password: password,
			Controls: []ldap.Control{ldap.NewControlBeheraPasswordPolicy()}})
		if err == nil && res != nil {
			if ctrl, ok := ldap.FindControl(res.Controls, ldap.ControlTypeBeheraPasswordPolicy).(*ldap.ControlBeheraPasswordPolicy); ok &&
				ctrl.Error == ldap.BeheraChangeAfterReset {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dstest: the password of %s set by the administrator is not marked to be changed (%v)", dn, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
