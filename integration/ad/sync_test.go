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
	"github.com/go-ldapauth/ldapauth/storetest"
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

func adSnapshot(t *testing.T, s *ldapauth.MemStore) *storetest.Contents {
	t.Helper()
	snap, err := storetest.Read(context.Background(), s)
	require.NoError(t, err)
	return snap
}

// The sync job on the README recipe (domain root, object class user,
// sAMAccountName), with a login group, nested groups resolved by the DC
// (LDAP_AUTH_NESTED_GROUPS=active_directory) and a primary group:
//
//   - u1 is a direct member of the login group and of team;
//   - u2's primary group is the login group (so neither u2's memberOf nor
//     the group's member lists it), and u2 is in team;
//   - u3 is in child, which is in parent and in the login group: a member of
//     both through nesting only.
//
// A steady state changes nothing (the sync counts the primary group and the
// nesting as a login does); then a removed user, a left group and a joined
// group are carried over, and nothing else moves.
func TestSyncAD(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	u1, u2, u3 := o.user("syncu1"), o.user("syncu2"), o.user("syncu3")
	child := o.group("syncchild", d.UserDN(u3))
	parent := o.group("syncparent", child)
	team := o.group("syncteam", d.UserDN(u1), d.UserDN(u2))
	loginGroup := o.group("synclogin", d.UserDN(u1), d.UserDN(u2), child)
	o.primaryGroup(u2, loginGroup)

	a, store := newAuth(t, d, syncEnv(d, []string{team, parent, loginGroup}, map[string]string{
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                loginGroup,
		"LDAP_AUTH_NESTED_GROUPS":         "active_directory",
		"LDAP_AUTH_EXCLUDE_DISABLED":      "true",
	}))
	for _, u := range []string{u1, u2, u3} {
		_, err := a.Authenticate(context.Background(), u, syncPassword)
		require.NoError(t, err, u)
	}
	members := func(g string) []string {
		m, _ := storetest.Members(store, g)
		return m
	}
	require.Equal(t, []string{u1, u2}, members(team))
	require.Equal(t, []string{u3}, members(parent), "nested")
	require.Equal(t, []string{u1, u2, u3}, members(loginGroup), "direct, primary group, nested")

	// The steps build on each other, so they are steps of this test, not
	// subtests that could run alone.
	step := func(name string, f func()) {
		t.Helper()
		t.Logf("step: %s", name)
		f()
	}
	step("steady state", func() {
		rep := adSync(t, a, ldapauth.SyncOptions{})
		assert.Zero(t, rep.Counts.Changes(), "the primary group and the nesting count as at login: %s", rep)
		assert.Equal(t, 3, rep.StoreUsers)
		assert.Equal(t, []string{u1, u2, u3}, members(loginGroup))
	})

	step("removed user, left group, joined group", func() {
		o.delete(d.UserDN(u1))
		o.member(team, d.UserDN(u2), false)
		o.member(team, d.UserDN(u3), true)
		rep := adSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []string{u1}, rep.UsersRemoved)
		assert.Equal(t, []ldapauth.Membership{{GroupDN: team, Username: u2}}, rep.MembershipsRemoved)
		assert.Equal(t, []ldapauth.Membership{{GroupDN: team, Username: u3}}, rep.MembershipsAdded)
		assert.Empty(t, rep.GroupsRemoved)
		assert.True(t, rep.Applied)

		assert.Nil(t, storetest.User(store, u1))
		assert.Equal(t, []string{u3}, members(team))
		assert.Equal(t, []string{u3}, members(parent))
		assert.Equal(t, []string{u2, u3}, members(loginGroup), "u1 went with its user")

		again := adSync(t, a, ldapauth.SyncOptions{})
		assert.Zero(t, again.Counts.Changes(), "a second run changes nothing: %s", again)
	})

	step("left the nested group", func() {
		o.member(parent, child, false)
		rep := adSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []ldapauth.Membership{{GroupDN: parent, Username: u3}}, rep.MembershipsRemoved, "confirmed with the in-chain rule")
		assert.Empty(t, rep.UsersRemoved, "still in the login group through child")
	})

	step("disabled counts as removed", func() {
		req := ldap.NewModifyRequest(d.UserDN(u3), nil)
		req.Replace("userAccountControl", []string{"514"})
		require.NoError(t, o.admin.Modify(req))
		rep := adSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []string{u3}, rep.UsersRemoved, "LDAP_AUTH_EXCLUDE_DISABLED leaves it out of the sync's search")
		snap := adSnapshot(t, store)
		assert.Equal(t, []string{u2}, snap.Users)
	})
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
	members, _ := storetest.Members(store, d.GroupDN("Domain Users"))
	require.Equal(t, []string{u}, members)

	rep := adSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Counts.Changes(), "%s", rep)
	assert.NotNil(t, storetest.User(store, u))
}

// Which accounts the recipe's (objectClass=user) search reads, and so what
// CreateUsers would create. The DC's computer account (DC1$, objectClass
// computer, a subclass of user) matches (objectClass=user): the built-in
// filters leave computers out on Active Directory, so the recipe alone
// creates no computer account. Samba's dns-dc1 service account is an
// enabled user object, so LDAP_AUTH_EXCLUDE_DISABLED keeps it; a login
// group leaves it out. Without CreateUsers the sync only touches users the
// store holds.
func TestSyncADComputerAccounts(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	u := o.user("syncpc")
	loginGroup := o.group("syncpclogin", d.UserDN(u))
	created := func(extra map[string]string) []string {
		a, _ := newAuth(t, d, syncEnv(d, []string{loginGroup}, extra))
		rep := adSync(t, a, ldapauth.SyncOptions{DryRun: true, CreateUsers: true})
		return rep.UsersCreated
	}
	// The DC's own account is what a computer search finds: prove it is
	// there, so that its absence below means the filter left it out.
	res, err := o.admin.Search(ldap.NewSearchRequest(d.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectClass=user)(objectClass=computer))", []string{"sAMAccountName"}, nil))
	require.NoError(t, err)
	var computers []string
	dcDN := ""
	for _, e := range res.Entries {
		computers = append(computers, e.GetAttributeValue("sAMAccountName"))
		if e.GetAttributeValue("sAMAccountName") == "DC1$" {
			dcDN = e.DN
		}
	}
	require.Contains(t, computers, "DC1$", "(objectClass=user) matches the computer account")
	t.Run("recipe alone", func(t *testing.T) {
		got := created(nil)
		for _, c := range computers {
			assert.NotContains(t, got, c, "a computer account")
		}
		assert.Contains(t, got, "krbtgt")
		assert.Contains(t, got, u)
	})
	t.Run("recipe, directory type given", func(t *testing.T) {
		got := created(map[string]string{"LDAP_AUTH_DIRECTORY_TYPE": "active_directory"})
		assert.NotContains(t, got, "DC1$")
		assert.Contains(t, got, u)
	})
	t.Run("exclude disabled", func(t *testing.T) {
		got := created(map[string]string{"LDAP_AUTH_EXCLUDE_DISABLED": "true"})
		assert.NotContains(t, got, "DC1$", "a computer account is enabled, but no person")
		assert.Contains(t, got, "dns-dc1")
		assert.NotContains(t, got, "krbtgt")
		assert.NotContains(t, got, "Guest")
	})
	t.Run("login group", func(t *testing.T) {
		got := created(map[string]string{
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
			"LDAP_LOGIN_GROUP":                loginGroup,
		})
		assert.Equal(t, []string{u}, got)
	})
	t.Run("a computer in the login group", func(t *testing.T) {
		o.member(loginGroup, dcDN, true)
		defer o.member(loginGroup, dcDN, false)
		got := created(map[string]string{
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
			"LDAP_LOGIN_GROUP":                loginGroup,
		})
		assert.Equal(t, []string{u}, got)
	})
	t.Run("without CreateUsers", func(t *testing.T) {
		a, store := newAuth(t, d, syncEnv(d, []string{loginGroup}, nil))
		_, err := a.Authenticate(context.Background(), u, syncPassword)
		require.NoError(t, err)
		rep := adSync(t, a, ldapauth.SyncOptions{})
		assert.Zero(t, rep.Counts.Changes(), "%s", rep)
		assert.Greater(t, rep.DirectoryUsers, sambatest.BigGroupSize, "every user object was read, in pages")
		assert.Equal(t, []string{u}, adSnapshot(t, store).Users, "only the user who logged in")
	})
}

// A login group whose direct members are all groups (outer holds inner
// and deep; inner holds u1, deep holds inner2, which holds u2): with
// either nesting the first sync of an empty store succeeds and creates
// exactly the nested members, as a login admits them; a user who leaves
// the nested group is removed by the next run. With nesting off nobody may
// log in, and the referral-only answer names the login group, not the
// search base.
func TestSyncADNestedLoginGroup(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	u1, u2, out := o.user("nestu1"), o.user("nestu2"), o.user("nestout")
	inner := o.group("nestinner", d.UserDN(u1))
	inner2 := o.group("nestinner2", d.UserDN(u2))
	deep := o.group("nestdeep", inner2)
	outer := o.group("nestouter", inner, deep)
	_ = out // in no group: never created

	env := func(nested string) map[string]string {
		return syncEnv(d, []string{outer}, map[string]string{
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
			"LDAP_LOGIN_GROUP":                outer,
			"LDAP_AUTH_NESTED_GROUPS":         nested,
		})
	}
	for _, nested := range []string{"active_directory", "walk"} {
		t.Run(nested, func(t *testing.T) {
			a, store := newAuth(t, d, env(nested))
			rep := adSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
			assert.Equal(t, []string{u1, u2}, rep.UsersCreated, "the nested members, no one else")
			assert.Equal(t, []string{u1, u2}, adSnapshot(t, store).Users)
			for _, u := range []string{u1, u2} {
				_, err := a.Authenticate(context.Background(), u, syncPassword)
				require.NoError(t, err, "a login admits %s too", u)
			}

			o.member(inner2, d.UserDN(u2), false)
			defer o.member(inner2, d.UserDN(u2), true)
			_, err := a.Authenticate(context.Background(), u2, syncPassword)
			require.ErrorIs(t, err, ldapauth.ErrNotPermitted, "a login refuses u2 now")
			rep = adSync(t, a, ldapauth.SyncOptions{Force: true})
			assert.Equal(t, []string{u2}, rep.UsersRemoved)
			assert.Equal(t, []string{u1}, adSnapshot(t, store).Users)
		})
	}
	t.Run("off", func(t *testing.T) {
		a, store := newAuth(t, d, env(""))
		rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
		assert.Nil(t, rep)
		var aerr *ldapauth.SyncAbortError
		require.ErrorAs(t, err, &aerr)
		assert.Equal(t, ldapauth.EnvLoginGroup, aerr.Variables[0], "%v", err)
		assert.Contains(t, err.Error(), outer)
		assert.Empty(t, adSnapshot(t, store).Users)
	})
}

// The domain root answers with entries and continuation references (to
// CN=Configuration and the DNS zones); the sync ignores the references, as
// the steady-state runs above show. An answer of references alone means
// the users are elsewhere: the sync aborts and removes nothing, forced or
// not. Samba answers a base outside its partitions with noSuchObject
// (Windows AD: a referral result, code 10); that aborts too.
func TestSyncADReferrals(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	u := o.user("syncref")
	a, store := newAuth(t, d, syncEnv(d, []string{d.GroupDN(sambatest.GroupReaders)}, nil))
	_, err := a.Authenticate(context.Background(), u, syncPassword)
	require.NoError(t, err)
	before := adSnapshot(t, store)

	res, err := o.admin.Search(ldap.NewSearchRequest("CN=Configuration,"+d.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=user)", []string{"1.1"}, nil))
	require.NoError(t, err)
	require.Empty(t, res.Entries)
	require.NotEmpty(t, res.Referrals, "CN=Configuration answers with a reference to CN=Schema only")

	tests := []struct {
		name     string
		changes  map[string]string
		variable string
		code     uint16 // 0: a referral-only answer
	}{
		{"references only: a base holding none of the users", map[string]string{"LDAP_AUTH_SEARCH_BASE": "CN=Configuration," + d.BaseDN}, "LDAP_AUTH_SEARCH_BASE", 0},
		{"references only: an object class no entry has", map[string]string{"LDAP_AUTH_OBJECT_CLASS": "inetOrgPerson"}, "LDAP_AUTH_SEARCH_BASE", 0},
		{"a base outside the partitions (Samba: noSuchObject)", map[string]string{"LDAP_AUTH_SEARCH_BASE": "DC=elsewhere,DC=test"}, "", ldap.LDAPResultNoSuchObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := syncEnv(d, []string{d.GroupDN(sambatest.GroupReaders)}, nil)
			for k, v := range tt.changes {
				vars[k] = v
			}
			a := authWithStore(t, d, vars, store)
			rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true})
			require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
			assert.Nil(t, rep)
			var aerr *ldapauth.SyncAbortError
			require.ErrorAs(t, err, &aerr)
			assert.Equal(t, ldapauth.SyncReadUsers, aerr.Phase)
			if tt.code != 0 {
				assert.True(t, ldap.IsErrorWithCode(err, tt.code), "%v", err)
			} else {
				assert.Equal(t, []string{tt.variable}, aerr.Variables, "%v", err)
				assert.Contains(t, err.Error(), "referrals")
			}
			assert.Equal(t, before, adSnapshot(t, store), "nothing removed, even forced")
		})
	}
}

// authWithStore is newAuth writing into an existing store.
func authWithStore(t *testing.T, d *sambatest.DC, changes map[string]string, store *ldapauth.MemStore) *ldapauth.Authenticator {
	t.Helper()
	vars := adEnv(d)
	for k, v := range changes {
		vars[k] = v
	}
	cfg, err := ldapauth.LoadConfig(lookup(vars))
	require.NoError(t, err)
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}
