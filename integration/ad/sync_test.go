package ad_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/sambatest"
)

// The sync job (Flagsmith's sync_ldap_users_and_groups) against the DC.
// The DC is shared by the whole binary, so these tests create their own
// users and groups (adObjects), named with a per-run number, and delete
// them when the test ends; they change nothing seeded.

var adRuns atomic.Int64

// adObjects creates and deletes the users and groups of one test, over an
// Administrator LDAPS connection (Samba sets unicodePwd only over TLS).
type adObjects struct {
	t     *testing.T
	d     *sambatest.DC
	admin *ldap.Conn
	run   string
}

func newADObjects(t *testing.T, d *sambatest.DC) *adObjects {
	return &adObjects{t: t, d: d, admin: d.Admin(t), run: strconv.FormatInt(adRuns.Add(1), 10)}
}

// name returns the run's name for base, e.g. "syncu1" -> "syncu1r3".
func (o *adObjects) name(base string) string { return base + "r" + o.run }

// password is the password of every user the sync tests create: three
// character classes, no user name in it, as Samba's default policy wants.
const syncPassword = "Quartz-Owl-77"

// user creates an enabled user in CN=Users and returns its sAMAccountName.
func (o *adObjects) user(base string) string {
	o.t.Helper()
	sam := o.name(base)
	req := ldap.NewAddRequest(o.d.UserDN(sam), nil)
	req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
	req.Attribute("sAMAccountName", []string{sam})
	req.Attribute("userPrincipalName", []string{o.d.UPN(sam)})
	req.Attribute("givenName", []string{"Sync"})
	req.Attribute("sn", []string{sam})
	req.Attribute("mail", []string{sam + "@" + sambatest.DNSName})
	req.Attribute("unicodePwd", []string{sambatest.UnicodePwd(syncPassword)})
	req.Attribute("userAccountControl", []string{"512"}) // a normal, enabled account
	require.NoError(o.t, o.admin.Add(req), "add user %s", sam)
	o.t.Cleanup(func() { o.delete(o.d.UserDN(sam)) })
	return sam
}

// group creates a global security group in CN=Users with the given member
// DNs and returns its DN.
func (o *adObjects) group(base string, members ...string) string {
	o.t.Helper()
	name := o.name(base)
	dn := o.d.GroupDN(name)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"top", "group"})
	req.Attribute("sAMAccountName", []string{name})
	if len(members) > 0 {
		req.Attribute("member", members)
	}
	require.NoError(o.t, o.admin.Add(req), "add group %s", name)
	o.t.Cleanup(func() { o.delete(dn) })
	return dn
}

// delete removes dn if it is still there (cleanup, or a test's removal).
func (o *adObjects) delete(dn string) {
	if err := o.admin.Del(ldap.NewDelRequest(dn, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		o.t.Errorf("delete %s: %v", dn, err)
	}
}

// member adds (or removes) memberDN to (from) groupDN.
func (o *adObjects) member(groupDN, memberDN string, add bool) {
	o.t.Helper()
	req := ldap.NewModifyRequest(groupDN, nil)
	if add {
		req.Add("member", []string{memberDN})
	} else {
		req.Delete("member", []string{memberDN})
	}
	require.NoError(o.t, o.admin.Modify(req), "member %s of %s: %v", memberDN, groupDN, add)
}

// primaryGroup makes groupDN the primary group of sam (who must be a
// member): AD then drops it from both sam's memberOf and the group's member.
func (o *adObjects) primaryGroup(sam, groupDN string) {
	o.t.Helper()
	res, err := o.admin.Search(ldap.NewSearchRequest(groupDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"objectSid"}, nil))
	require.NoError(o.t, err)
	require.Len(o.t, res.Entries, 1)
	rid, err := sambatest.RID(res.Entries[0].GetRawAttributeValue("objectSid"))
	require.NoError(o.t, err)
	req := ldap.NewModifyRequest(o.d.UserDN(sam), nil)
	req.Replace("primaryGroupID", []string{strconv.FormatUint(uint64(rid), 10)})
	require.NoError(o.t, o.admin.Modify(req))
	// AD refuses to delete a group that is someone's primary group: give
	// the user Domain Users (513) back first, if the user is still there.
	o.t.Cleanup(func() {
		req := ldap.NewModifyRequest(o.d.UserDN(sam), nil)
		req.Replace("primaryGroupID", []string{"513"})
		if err := o.admin.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			o.t.Errorf("reset the primary group of %s: %v", sam, err)
		}
	})
}

// syncEnv is the README recipe plus the sync job's variables, bound as
// Administrator by plain name (the formatter makes LDAPAUTH\Administrator).
func syncEnv(d *sambatest.DC, synced []string, extra map[string]string) map[string]string {
	vars := map[string]string{
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     strings.Join(synced, ":"),
		"LDAP_SYNC_USER_USERNAME":                d.AdminName,
		"LDAP_SYNC_USER_PASSWORD":                d.AdminPassword,
	}
	for k, v := range extra {
		vars[k] = v
	}
	return vars
}

func adSync(t *testing.T, a *ldapauth.Authenticator, opts ldapauth.SyncOptions) *ldapauth.SyncReport {
	t.Helper()
	rep, err := a.Sync(context.Background(), opts)
	require.NoError(t, err)
	require.NotNil(t, rep)
	return rep
}

func adSnapshot(t *testing.T, s *ldapauth.MemStore) *ldapauth.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(context.Background())
	require.NoError(t, err)
	return snap
}

// Domain Users is everyone's primary group and nobody's memberOf: as the
// login group (the natural "any domain user" choice) the login admits its
// members through primaryGroupID, and the sync must find them the same way.
func TestSyncADPrimaryGroupAsLoginGroup(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	u := o.user("syncdu")
	a, store := newAuth(t, d, syncEnv(d, []string{d.GroupDN("Domain Users")}, map[string]string{
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                d.GroupDN("Domain Users"),
	}))
	_, err := a.Authenticate(context.Background(), u, syncPassword)
	require.NoError(t, err)
	members, _ := store.Members(d.GroupDN("Domain Users"))
	require.Equal(t, []string{u}, members)

	rep := adSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Counts.Changes(), "%s", rep)
	assert.NotNil(t, store.User(u))
}
