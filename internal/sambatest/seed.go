package sambatest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"
)

// userAccountControl flags (MS-ADTS 2.2.16).
const (
	uacAccountDisable = 0x0002
	uacPasswdNotReqd  = 0x0020
	uacNormalAccount  = 0x0200
)

type seedUser struct {
	sam, given, sn, password string
}

// seedUsers are created with a password; the passwords meet Samba's
// default complexity rules (3 character classes, not containing the name).
var seedUsers = []seedUser{
	{UserAlice, "Alice", "Liddell", "Rabbit-Hole-1"},
	{UserBob, "Bob", "Builder", "Can-We-Fix-2"},
	{UserCarol, "Carol", "Danvers", "Captain-M-3"},
	{UserDave, "Dave", "Bowman", "Pod-Bay-Doors-4"},
	{UserErin, "Erin", "Brockovich", "Hinkley-5-Water"},
	{UserFrank, "Frank", "Poole", "Discovery-One-6"},
	{UserGrace, "Grace", "Hopper", "Cobol-Bug-7"},
	{UserHeidi, "Heidi", "Klum", "Runway-8-Old"},
	{UserIvan, "Ivan", "Drago", "Must-Break-9"},
	{UserZoe, "Zoë", "Washburne", "Serenity-10-Wash"},
	{UserLockable, "Lana", "Lock", "Three-Strikes-11"},
	{UserNoGroups, "Nora", "Nobody", "Lonely-12-Heart"},
	{UserUnicodePwd, "Ülrich", "Ünicode", "Pässwörd-Ü-13"},
}

// seed creates the users, groups and password policies described by the
// User... and Group... constants, over an Administrator LDAPS connection.
func (d *DC) seed() error {
	c, err := d.adminConn()
	if err != nil {
		return err
	}
	defer c.Close()

	if err := d.addSeedUsers(c); err != nil {
		return err
	}
	if err := d.setAccountStates(c); err != nil {
		return err
	}
	if err := d.addSeedGroups(c); err != nil {
		return err
	}
	if err := d.setGracePrimaryGroup(c); err != nil {
		return err
	}

	// Fine-grained password policies (PSOs), so that lockout and password
	// expiry touch only the users meant, not the domain.
	if err := d.addPSO(c, "sambatest-lockout", 3, 42*24*time.Hour, d.UserDN(UserIvan), d.UserDN(UserLockable)); err != nil {
		return err
	}
	if err := d.agePassword(UserHeidi, 60*24*time.Hour); err != nil {
		return err
	}
	return d.lockIvan()
}

// addSeedUsers adds the users with a password, recorded in d.Users, and the
// big group's users.
func (d *DC) addSeedUsers(c *ldap.Conn) error {
	d.Users = make(map[string]string, len(seedUsers))
	for _, u := range seedUsers {
		if err := d.addUser(c, u); err != nil {
			return err
		}
		d.Users[u.sam] = u.password
	}
	return d.addBigUsers()
}

// setAccountStates disables dave, expires erin's account and makes frank
// change his password at the next login.
func (d *DC) setAccountStates(c *ldap.Conn) error {
	past := strconv.FormatInt(FileTime(time.Now().Add(-24*time.Hour)), 10)
	for _, m := range []struct {
		sam, attr, value string
	}{
		{UserDave, "userAccountControl", strconv.Itoa(uacNormalAccount | uacAccountDisable)},
		{UserErin, "accountExpires", past},
		{UserFrank, "pwdLastSet", "0"},
	} {
		req := ldap.NewModifyRequest(d.UserDN(m.sam), nil)
		req.Replace(m.attr, []string{m.value})
		if err := c.Modify(req); err != nil {
			return fmt.Errorf("sambatest: set %s of %s: %w", m.attr, m.sam, err)
		}
	}
	return nil
}

// addSeedGroups adds the groups, big with alice and big0001..., and
// nested-parent around nested-child.
func (d *DC) addSeedGroups(c *ldap.Conn) error {
	big := make([]string, 0, BigGroupSize)
	big = append(big, d.UserDN(UserAlice))
	for i := 1; i < BigGroupSize; i++ {
		big = append(big, d.UserDN(bigUser(i)))
	}
	for _, g := range []struct {
		name    string
		members []string
	}{
		{GroupLogin, []string{UserAlice, UserBob, UserCarol, UserDave, UserErin, UserFrank, UserGrace, UserHeidi, UserIvan, UserZoe, UserLockable, UserUnicodePwd}},
		{GroupReaders, []string{UserAlice, UserGrace}},
		{GroupMarvel, []string{UserBob}},
		{GroupNestedChild, []string{UserCarol}},
		{GroupBig, nil},
	} {
		dns := make([]string, 0, len(g.members))
		for _, m := range g.members {
			dns = append(dns, d.UserDN(m))
		}
		if g.name == GroupBig {
			dns = big
		}
		if err := d.addGroup(c, g.name, dns); err != nil {
			return err
		}
	}
	return d.addGroup(c, GroupNestedParent, []string{d.GroupDN(GroupNestedChild)})
}

// setGracePrimaryGroup makes readers grace's primary group; she must be a
// member first.
func (d *DC) setGracePrimaryGroup(c *ldap.Conn) error {
	rid, err := d.rid(c, d.GroupDN(GroupReaders))
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(d.UserDN(UserGrace), nil)
	req.Replace("primaryGroupID", []string{strconv.FormatUint(uint64(rid), 10)})
	if err := c.Modify(req); err != nil {
		return fmt.Errorf("sambatest: set primaryGroupID of grace: %w", err)
	}
	return nil
}

func (d *DC) addUser(c *ldap.Conn, u seedUser) error {
	req := ldap.NewAddRequest(d.UserDN(u.sam), nil)
	req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
	req.Attribute("sAMAccountName", []string{u.sam})
	req.Attribute("userPrincipalName", []string{d.UPN(u.sam)})
	req.Attribute("givenName", []string{u.given})
	req.Attribute("sn", []string{u.sn})
	req.Attribute("displayName", []string{u.given + " " + u.sn})
	req.Attribute("mail", []string{u.sam + "@" + DNSName})
	req.Attribute("unicodePwd", []string{UnicodePwd(u.password)})
	req.Attribute("userAccountControl", []string{strconv.Itoa(uacNormalAccount)})
	if err := c.Add(req); err != nil {
		return fmt.Errorf("sambatest: add user %s: %w", u.sam, err)
	}
	return nil
}

func bigUser(i int) string { return fmt.Sprintf("big%04d", i) }

// addBigUsers adds big0001... without passwords (disabled, password not
// required), over a few parallel connections: Samba serves each connection
// in one of its pre-forked workers.
func (d *DC) addBigUsers() error {
	const workers = 4
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.adminConn()
			if err != nil {
				errs[w] = err
				return
			}
			defer c.Close()
			for i := 1 + w; i < BigGroupSize; i += workers {
				sam := bigUser(i)
				req := ldap.NewAddRequest(d.UserDN(sam), nil)
				req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
				req.Attribute("sAMAccountName", []string{sam})
				req.Attribute("userAccountControl", []string{strconv.Itoa(uacNormalAccount | uacAccountDisable | uacPasswdNotReqd)})
				if err := c.Add(req); err != nil {
					errs[w] = fmt.Errorf("sambatest: add user %s: %w", sam, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *DC) addGroup(c *ldap.Conn, name string, members []string) error {
	req := ldap.NewAddRequest(d.GroupDN(name), nil)
	req.Attribute("objectClass", []string{"top", "group"})
	req.Attribute("sAMAccountName", []string{name})
	if len(members) > 0 {
		req.Attribute("member", members)
	}
	if err := c.Add(req); err != nil {
		return fmt.Errorf("sambatest: add group %s: %w", name, err)
	}
	return nil
}

// rid reads the relative identifier of dn: the last sub-authority of its
// objectSid.
func (d *DC) rid(c *ldap.Conn, dn string) (uint32, error) {
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"objectSid"}, nil))
	if err != nil {
		return 0, fmt.Errorf("sambatest: read objectSid of %s: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return 0, fmt.Errorf("sambatest: read objectSid of %s: %d entries", dn, len(res.Entries))
	}
	return RID(res.Entries[0].GetRawAttributeValue("objectSid"))
}

// addPSO adds a password settings object (precedence 1, no complexity,
// 30-minute lockout window and duration) applying to the given DNs. A
// lockout threshold of 0 means no lockout.
func (d *DC) addPSO(c *ldap.Conn, name string, lockoutThreshold int, maxAge time.Duration, appliesTo ...string) error {
	// Intervals are negative counts of 100 ns.
	ticks := func(v time.Duration) string { return strconv.FormatInt(-int64(v/100), 10) }
	dn := "CN=" + name + ",CN=Password Settings Container,CN=System," + d.BaseDN
	window := ticks(30 * time.Minute)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"msDS-PasswordSettings"})
	req.Attribute("msDS-PasswordSettingsPrecedence", []string{"1"})
	req.Attribute("msDS-PasswordReversibleEncryptionEnabled", []string{"FALSE"})
	req.Attribute("msDS-PasswordHistoryLength", []string{"0"})
	req.Attribute("msDS-PasswordComplexityEnabled", []string{"FALSE"})
	req.Attribute("msDS-MinimumPasswordLength", []string{"0"})
	req.Attribute("msDS-MinimumPasswordAge", []string{"0"})
	req.Attribute("msDS-MaximumPasswordAge", []string{ticks(maxAge)})
	req.Attribute("msDS-LockoutThreshold", []string{strconv.Itoa(lockoutThreshold)})
	req.Attribute("msDS-LockoutObservationWindow", []string{window})
	req.Attribute("msDS-LockoutDuration", []string{window})
	req.Attribute("msDS-PSOAppliesTo", appliesTo)
	if err := c.Add(req); err != nil {
		return fmt.Errorf("sambatest: add password settings %s: %w", name, err)
	}
	return nil
}

// agePasswordScript sets pwdLastSet on the raw domain partition, below
// Samba's ldb modules: over LDAP only 0 and -1 are accepted.
const agePasswordScript = `
import sys, ldb
db = ldb.Ldb(sys.argv[1], options=["modules:"])
m = ldb.Message()
m.dn = ldb.Dn(db, sys.argv[2])
m["pwdLastSet"] = ldb.MessageElement(sys.argv[3], ldb.FLAG_MOD_REPLACE, "pwdLastSet")
db.modify(m)
`

// agePassword makes sam's password older than the domain's maximum password
// age (42 days, the provision default), so it has expired. A PSO cannot do
// it: Samba treats a maximum age under one day as "never expires".
func (d *DC) agePassword(sam string, age time.Duration) error {
	partition := filepath.Join(d.Dir, "private", "sam.ldb.d", strings.ToUpper(d.BaseDN)+".ldb")
	cmd := exec.Command(python(), "-c", agePasswordScript, partition, d.UserDN(sam),
		strconv.FormatInt(FileTime(time.Now().Add(-age)), 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sambatest: age the password of %s: %w\n%s", sam, err, out)
	}
	return nil
}

// python returns the interpreter samba-tool runs with, the one that has
// Samba's ldb bindings (python3 in PATH may be another one, e.g. pyenv's).
func python() string {
	if path, err := exec.LookPath("samba-tool"); err == nil {
		if b, err := os.ReadFile(path); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			if f := strings.Fields(strings.TrimPrefix(line, "#!")); len(f) > 0 && strings.HasPrefix(line, "#!") {
				return f[0]
			}
		}
	}
	return "python3"
}

// lockIvan makes three bad simple binds as ivan so the lockout PSO locks him.
func (d *DC) lockIvan() error {
	c, err := ldap.DialURL(d.URL)
	if err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		if err := c.Bind(d.UserDN(UserIvan), "wrong-password"); err == nil {
			return errors.New("sambatest: bind as ivan with a wrong password succeeded")
		}
	}
	return nil
}

// FileTime converts t to Active Directory's time format (accountExpires,
// pwdLastSet, lockoutTime): 100 ns intervals since 1601-01-01 UTC.
func FileTime(t time.Time) int64 {
	return (t.Unix()+11644473600)*10_000_000 + int64(t.Nanosecond())/100
}

// UnicodePwd encodes password for the unicodePwd attribute: the password in
// double quotes, in UTF-16LE. Samba accepts it only over an encrypted
// connection (LDAPS or StartTLS).
func UnicodePwd(password string) string {
	u := utf16.Encode([]rune(`"` + password + `"`))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		binary.LittleEndian.PutUint16(b[2*i:], r)
	}
	return string(b)
}

// RID returns the relative identifier (the last sub-authority) of a binary
// objectSid, which is what primaryGroupID and primaryGroupToken hold.
func RID(sid []byte) (uint32, error) {
	if len(sid) < 8 || len(sid) != 8+4*int(sid[1]) || sid[1] == 0 {
		return 0, fmt.Errorf("sambatest: malformed objectSid of %d bytes", len(sid))
	}
	return binary.LittleEndian.Uint32(sid[len(sid)-4:]), nil
}
