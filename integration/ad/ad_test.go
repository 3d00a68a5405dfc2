// Package ad_test runs ldapauth against a real Active Directory domain
// controller: Samba 4 AD, provisioned on loopback by internal/sambatest, one
// DC for the whole test binary. Without Samba (or without root) every test
// skips with the reason; CI sets LDAPAUTH_REQUIRE_SAMBA=1 so that a missing
// Samba fails instead.
//
// Samba differs from Windows AD in four ways these tests work around and
// say so where it matters: it refuses a simple bind as the bare
// sAMAccountName ("alice", data 52e) that Windows accepts; it answers 52e,
// not 525, for an unknown user; it returns every value of a plain
// "member" read, where Windows stops at 1500 (member;range=0-1499); and it
// answers a search base outside its partitions with noSuchObject, where
// Windows answers a referral result (code 10), so the sync's referral
// tests use the answers Samba does give: references only (CN=Configuration,
// or the domain root with a filter no entry matches).
//
// The sync job's tests (sync_test.go) create their own users and groups and
// delete them at the end, since the DC is shared.
package ad_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/sambatest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

var dc sambatest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	dc.Stop()
	os.Exit(code)
}

// adEnv is the README's Active Directory recipe for the down-level form,
// pointed at the test DC: the variables and values the Flagsmith docs give.
func adEnv(d *sambatest.DC) map[string]string {
	return map[string]string{
		"LDAP_AUTH_URL":                     d.URL,
		"LDAP_AUTH_SEARCH_BASE":             d.BaseDN, // the domain root: answers carry continuation references
		"LDAP_AUTH_FORMAT_USERNAME":         "django_python3_ldap.utils.format_username_active_directory",
		"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN": d.Domain,
		"LDAP_AUTH_USER_FIELDS":             "username=sAMAccountName,email=mail,first_name=givenName,last_name=sn",
		"LDAP_AUTH_OBJECT_CLASS":            "user",
	}
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// newAuth returns an Authenticator for adEnv with changes applied (an empty
// value deletes a variable) and its store.
func newAuth(t *testing.T, d *sambatest.DC, changes map[string]string) (*ldapauth.Authenticator, *ldapauth.MemStore) {
	t.Helper()
	vars := adEnv(d)
	for k, v := range changes {
		if v == "" {
			delete(vars, k)
		} else {
			vars[k] = v
		}
	}
	cfg, err := ldapauth.LoadConfig(lookup(vars))
	require.NoError(t, err)
	store := ldapauth.NewMemStore()
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a, store
}

// All three name forms of the Flagsmith docs. Samba refuses the plain form,
// so for it the test pins the bind name to exactly what the docs say
// ("username") and that Samba's refusal is an ordinary invalid-credentials
// error; the same user then logs in through the other two forms.
func TestNameForms(t *testing.T) {
	d := dc.Get(t)
	tests := []struct {
		name     string
		changes  map[string]string
		bindName string
		samba    bool // Samba accepts the form
	}{
		{"plain username", map[string]string{"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN": ""}, "alice", false},
		{"down-level DOMAIN\\username", nil, `LDAPAUTH\alice`, true},
		{"user principal name", map[string]string{
			"LDAP_AUTH_FORMAT_USERNAME":         "django_python3_ldap.utils.format_username_active_directory_principal",
			"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN": sambatest.DNSName,
		}, "alice@ldapauth.test", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, store := newAuth(t, d, tt.changes)
			u, err := a.Authenticate(context.Background(), "alice", d.Users[sambatest.UserAlice])
			if !tt.samba {
				// Windows AD binds the bare sAMAccountName; Samba 4 answers
				// data 52e. What the library controls is the bind name.
				require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
				var lerr *ldapauth.LoginError
				require.ErrorAs(t, err, &lerr)
				assert.Equal(t, tt.bindName, lerr.BindName)
				assert.Equal(t, "django_python3_ldap.utils.format_username_active_directory", lerr.Formatter)
				code, ok := ldapauth.ADBindCode(err)
				require.True(t, ok, "Samba's AD diagnostic is parsed: %v", err)
				assert.Equal(t, "52e", code)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "alice", u.Username, "the sAMAccountName")
			assert.Equal(t, d.UserDN(sambatest.UserAlice), u.DN)
			assert.Equal(t, map[string]string{"username": "alice", "email": "alice@ldapauth.test", "first_name": "Alice", "last_name": "Liddell"}, u.Fields)
			stored := storetest.User(store, "alice")
			require.NotNil(t, stored)
			assert.Equal(t, "alice", stored.Username)

			// The typed case does not matter; the directory's spelling is stored.
			u, err = a.Authenticate(context.Background(), "ALICE", d.Users[sambatest.UserAlice])
			require.NoError(t, err)
			assert.Equal(t, "alice", u.Username)
			snap, err := storetest.Read(context.Background(), store)
			require.NoError(t, err)
			assert.Equal(t, []string{"alice"}, snap.Users)
		})
	}
	t.Run("non-ASCII sAMAccountName and password", func(t *testing.T) {
		a, _ := newAuth(t, d, nil)
		for _, sam := range []string{sambatest.UserZoe, sambatest.UserUnicodePwd} {
			u, err := a.Authenticate(context.Background(), sam, d.Users[sam])
			require.NoError(t, err, sam)
			assert.Equal(t, sam, u.Username)
		}
	})
}

// Each account state Samba can produce gives its typed error, which is
// still an invalid-credentials error, in both name forms Samba binds.
func TestAccountStates(t *testing.T) {
	d := dc.Get(t)
	forms := map[string]map[string]string{
		"down-level": nil,
		"principal": {
			"LDAP_AUTH_FORMAT_USERNAME":         "django_python3_ldap.utils.format_username_active_directory_principal",
			"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN": sambatest.DNSName,
		},
	}
	all := []error{ldapauth.ErrAccountDisabled, ldapauth.ErrAccountLocked, ldapauth.ErrAccountExpired,
		ldapauth.ErrPasswordExpired, ldapauth.ErrPasswordMustChange, ldapauth.ErrLogonNotPermitted}
	tests := []struct {
		name, user, password string
		state                error // nil: a plain invalid-credentials error
		code                 string
	}{
		{"wrong password", sambatest.UserAlice, "Wrong-Password-1", nil, "52e"},
		{"unknown user (Samba: 52e, AD: 525)", "nosuchuser", "Whatever-1", nil, "52e"},
		{"disabled", sambatest.UserDave, d.Users[sambatest.UserDave], ldapauth.ErrAccountDisabled, "533"},
		{"account expired", sambatest.UserErin, d.Users[sambatest.UserErin], ldapauth.ErrAccountExpired, "701"},
		{"must change password", sambatest.UserFrank, d.Users[sambatest.UserFrank], ldapauth.ErrPasswordMustChange, "773"},
		{"password expired", sambatest.UserHeidi, d.Users[sambatest.UserHeidi], ldapauth.ErrPasswordExpired, "532"},
		{"locked", sambatest.UserIvan, d.Users[sambatest.UserIvan], ldapauth.ErrAccountLocked, "775"},
		{"locked, wrong password", sambatest.UserIvan, "Wrong-Password-1", ldapauth.ErrAccountLocked, "775"},
		{"disabled, wrong password: no state revealed", sambatest.UserDave, "Wrong-Password-1", nil, "52e"},
	}
	for form, changes := range forms {
		a, store := newAuth(t, d, changes)
		for _, tt := range tests {
			t.Run(form+"/"+tt.name, func(t *testing.T) {
				_, err := a.Authenticate(context.Background(), tt.user, tt.password)
				require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a naive caller sees a failed login")
				assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
				assert.NotContains(t, err.Error(), tt.password)
				var acct *ldapauth.AccountError
				if tt.state == nil {
					assert.False(t, errors.As(err, &acct), "no account state: %v", err)
					for _, s := range all {
						assert.NotErrorIs(t, err, s)
					}
				} else {
					assert.ErrorIs(t, err, tt.state)
					require.ErrorAs(t, err, &acct)
					assert.Equal(t, tt.code, acct.Code)
					for _, s := range all {
						if s != tt.state {
							assert.NotErrorIs(t, err, s)
						}
					}
				}
				code, ok := ldapauth.ADBindCode(err)
				require.True(t, ok)
				assert.Equal(t, tt.code, code)
				assert.Nil(t, storetest.User(store, tt.user), "nothing stored")
			})
		}
	}
}

// The login group, direct, nested (off, in-chain, walk) and as a primary
// group.
func TestLoginGroup(t *testing.T) {
	d := dc.Get(t)
	login := func(group string, nested string) map[string]string {
		return map[string]string{
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
			"LDAP_LOGIN_GROUP":                group,
			"LDAP_AUTH_NESTED_GROUPS":         nested,
		}
	}
	tests := []struct {
		name, group, nested string
		user                string
		ok                  bool
	}{
		{"direct member", sambatest.GroupLogin, "", sambatest.UserAlice, true},
		{"not a member", sambatest.GroupLogin, "", sambatest.UserNoGroups, false},
		{"nested member, nesting off", sambatest.GroupNestedParent, "", sambatest.UserCarol, false},
		{"nested member, in chain", sambatest.GroupNestedParent, "active_directory", sambatest.UserCarol, true},
		{"nested member, walk", sambatest.GroupNestedParent, "walk", sambatest.UserCarol, true},
		{"non-member, in chain", sambatest.GroupNestedParent, "active_directory", sambatest.UserAlice, false},
		{"non-member, walk", sambatest.GroupNestedParent, "walk", sambatest.UserAlice, false},
		{"direct member of the child, in chain", sambatest.GroupNestedChild, "active_directory", sambatest.UserCarol, true},
		{"primary group", sambatest.GroupReaders, "", sambatest.UserGrace, true},
		{"primary group, in chain", sambatest.GroupReaders, "active_directory", sambatest.UserGrace, true},
		{"primary group, walk", sambatest.GroupReaders, "walk", sambatest.UserGrace, true},
		{"Domain Users, everyone's primary group", "Domain Users", "", sambatest.UserNoGroups, true},
		{"someone else's primary group", sambatest.GroupReaders, "", sambatest.UserBob, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, store := newAuth(t, d, login(d.GroupDN(tt.group), tt.nested))
			u, err := a.Authenticate(context.Background(), tt.user, d.Users[tt.user])
			if !tt.ok {
				require.ErrorIs(t, err, ldapauth.ErrNotPermitted)
				assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "the password was right")
				assert.Nil(t, storetest.User(store, tt.user))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.user, u.Username)
		})
	}
}

// The disabled-accounts recipe on a real AD: the built-in filter keeps
// enabled users and drops dave. (A disabled user's own bind already fails
// with ErrAccountDisabled; the filter matters for searches made by a
// service or sync account, which see every account.)
func TestExcludeDisabled(t *testing.T) {
	d := dc.Get(t)
	a, _ := newAuth(t, d, map[string]string{"LDAP_AUTH_EXCLUDE_DISABLED": "true",
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "login_group", "LDAP_LOGIN_GROUP": d.GroupDN(sambatest.GroupLogin)})
	_, err := a.Authenticate(context.Background(), sambatest.UserAlice, d.Users[sambatest.UserAlice])
	require.NoError(t, err, "the filter is valid on AD and keeps enabled users")

	conn := bound(t, d, sambatest.UserAlice)
	for _, tt := range []struct {
		exclude bool
		want    int
	}{{false, 1}, {true, 0}} {
		cfg := &ldapauth.Config{ObjectClass: "user", ExcludeDisabled: tt.exclude, LoginGroup: d.GroupDN(sambatest.GroupLogin)}
		filters, err := ldapauth.LoginGroupFilters{}.SearchFilters(cfg, map[string]string{"sAMAccountName": sambatest.UserDave})
		require.NoError(t, err)
		res, err := conn.Search(ldap.NewSearchRequest(d.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(&"+strings.Join(filters, "")+")", []string{"1.1"}, nil))
		require.NoError(t, err)
		assert.Len(t, res.Entries, tt.want, "exclude disabled: %v", tt.exclude)
	}
}

// Synced groups: direct, nested (by nesting mode) and primary groups.
func TestSyncedGroups(t *testing.T) {
	d := dc.Get(t)
	groups := []string{sambatest.GroupReaders, sambatest.GroupNestedParent, sambatest.GroupMarvel, "Domain Users"}
	var dns []string
	for _, g := range groups {
		dns = append(dns, d.GroupDN(g))
	}
	tests := []struct {
		nested string
		user   string
		want   []string // groups the user is in afterwards
	}{
		{"", sambatest.UserAlice, []string{sambatest.GroupReaders, "Domain Users"}},
		{"", sambatest.UserGrace, []string{sambatest.GroupReaders, "Domain Users"}}, // readers is her primary group; Domain Users explicit
		{"", sambatest.UserCarol, []string{"Domain Users"}},
		{"active_directory", sambatest.UserCarol, []string{sambatest.GroupNestedParent, "Domain Users"}},
		{"walk", sambatest.UserCarol, []string{sambatest.GroupNestedParent, "Domain Users"}},
		{"active_directory", sambatest.UserGrace, []string{sambatest.GroupReaders, "Domain Users"}},
		{"walk", sambatest.UserBob, []string{sambatest.GroupMarvel, "Domain Users"}},
		{"", sambatest.UserNoGroups, []string{"Domain Users"}}, // no memberOf at all: the group entries and the primary group
	}
	for _, tt := range tests {
		t.Run(tt.user+"/"+tt.nested, func(t *testing.T) {
			a, store := newAuth(t, d, map[string]string{
				"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
				"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
				"LDAP_SYNCED_GROUPS":                     strings.Join(dns, ":"),
				"LDAP_AUTH_NESTED_GROUPS":                tt.nested,
			})
			_, err := a.Authenticate(context.Background(), tt.user, d.Users[tt.user])
			require.NoError(t, err)
			var got []string
			for _, g := range groups {
				members, _ := storetest.Members(store, d.GroupDN(g))
				if containsFold(members, tt.user) {
					got = append(got, g)
				}
			}
			assert.ElementsMatch(t, tt.want, got)
			assert.Equal(t, []string{"1"}, storetest.Organisations(store, tt.user))
		})
	}
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// connDir adapts a go-ldap connection to ldapauth.Directory.
type connDir struct{ c *ldap.Conn }

func (d connDir) Search(_ context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	return d.c.Search(req)
}

// rangeLimit makes Samba answer member reads as Windows AD does past its
// MaxValRange: a read of "member" or "member;range=N-*" asks Samba for at
// most step values (member;range=N-(N+step-1)), and Samba's own ranged
// retrieval answers. It records the ranges asked for.
type rangeLimit struct {
	dir    ldapauth.Directory
	step   int
	ranges []string
}

func (r *rangeLimit) Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	cp := *req
	cp.Attributes = nil
	for _, a := range req.Attributes {
		lo := -1
		switch {
		case strings.EqualFold(a, "member"):
			lo = 0
		case strings.HasPrefix(strings.ToLower(a), "member;range=") && strings.HasSuffix(a, "-*"):
			n := strings.TrimSuffix(a[len("member;range="):], "-*")
			lo, _ = strconv.Atoi(n)
		}
		if lo >= 0 {
			a = "member;range=" + strconv.Itoa(lo) + "-" + strconv.Itoa(lo+r.step-1)
			r.ranges = append(r.ranges, a)
		}
		cp.Attributes = append(cp.Attributes, a)
	}
	return r.dir.Search(ctx, &cp)
}

func bound(t *testing.T, d *sambatest.DC, sam string) *ldap.Conn {
	t.Helper()
	c := d.Dial(t)
	require.NoError(t, c.Bind(d.DownLevel(sam), d.Users[sam]))
	return c
}

// A group of 1600 members read in ranges to the end, and membership through
// the group entry of a user in the last range.
func TestLargeGroup(t *testing.T) {
	d := dc.Get(t)
	want := map[string]bool{strings.ToLower(d.UserDN(sambatest.UserAlice)): true}
	for i := 1; i < sambatest.BigGroupSize; i++ {
		want[strings.ToLower(d.UserDN(bigUser(i)))] = true
	}
	conn := connDir{bound(t, d, sambatest.UserAlice)}

	t.Run("Samba's plain answer", func(t *testing.T) {
		members, _, err := ldapauth.ReadGroupMembers(context.Background(), conn, d.GroupDN(sambatest.GroupBig))
		require.NoError(t, err)
		assert.Len(t, members, sambatest.BigGroupSize)
	})
	for _, step := range []int{1500, 500, 333} {
		t.Run("ranges of "+strconv.Itoa(step), func(t *testing.T) {
			dir := &rangeLimit{dir: conn, step: step}
			members, _, err := ldapauth.ReadGroupMembers(context.Background(), dir, d.GroupDN(sambatest.GroupBig))
			require.NoError(t, err)
			got := map[string]bool{}
			for _, m := range members {
				got[strings.ToLower(m)] = true
			}
			assert.Equal(t, want, got, "every member, once")
			assert.Len(t, members, sambatest.BigGroupSize)
			assert.Len(t, dir.ranges, (sambatest.BigGroupSize+step-1)/step, "one read per range: %v", dir.ranges)

			// A user without memberOf (as a directory without it would
			// give) is found in the group entry, whichever range holds it.
			last := members[len(members)-1]
			name := ldapauth.GroupName(last)
			store := ldapauth.NewMemStore()
			cfg := &ldapauth.Config{Store: store, OrganisationID: "1", SyncedGroups: []string{d.GroupDN(sambatest.GroupBig)}}
			u := &ldapauth.User{DN: last, Username: name}
			require.NoError(t, store.SaveUser(context.Background(), u), "a login saves the user before the syncer runs")
			require.NoError(t, ldapauth.SyncUserGroups{}.SyncRelations(context.Background(), cfg, u, &rangeLimit{dir: conn, step: step}))
			got2, _ := storetest.Members(store, d.GroupDN(sambatest.GroupBig))
			assert.Equal(t, []string{name}, got2)
		})
	}
}

func bigUser(i int) string { return fmt.Sprintf("big%04d", i) }

// A subtree search from the domain root answers with the entry and a
// continuation reference to CN=Configuration. ldapauth logs in without
// chasing it (the reference names ldapauth.test, which does not resolve
// here), and a referral-only answer is an unknown user, not an error.
func TestDomainRootReferrals(t *testing.T) {
	d := dc.Get(t)
	res, err := bound(t, d, sambatest.UserAlice).Search(ldap.NewSearchRequest(d.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(sAMAccountName=alice)(objectClass=user))", []string{"1.1"}, nil))
	require.NoError(t, err)
	require.Len(t, res.Entries, 1)
	require.NotEmpty(t, res.Referrals, "the domain root answers with references")

	a, _ := newAuth(t, d, nil)
	u, err := a.Authenticate(context.Background(), sambatest.UserAlice, d.Users[sambatest.UserAlice])
	require.NoError(t, err)
	assert.Equal(t, d.UserDN(sambatest.UserAlice), u.DN)

	a, _ = newAuth(t, d, map[string]string{"LDAP_AUTH_OBJECT_CLASS": "inetOrgPerson"})
	_, err = a.Authenticate(context.Background(), sambatest.UserAlice, d.Users[sambatest.UserAlice])
	require.ErrorIs(t, err, ldapauth.ErrUnknownUser, "no entry, only references")
	assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
}

func TestTLS(t *testing.T) {
	d := dc.Get(t)
	tests := []struct {
		name    string
		changes map[string]string
		tlsErr  bool
	}{
		{"StartTLS", map[string]string{"LDAP_AUTH_USE_TLS": "true", "LDAP_AUTH_TLS_CA_FILE": d.CAFile}, false},
		{"LDAPS", map[string]string{"LDAP_AUTH_URL": d.LDAPSURL, "LDAP_AUTH_TLS_CA_FILE": d.CAFile}, false},
		{"StartTLS, wrong CA", map[string]string{"LDAP_AUTH_USE_TLS": "true", "LDAP_AUTH_TLS_CA_FILE": d.WrongCAFile}, true},
		{"LDAPS, wrong CA", map[string]string{"LDAP_AUTH_URL": d.LDAPSURL, "LDAP_AUTH_TLS_CA_FILE": d.WrongCAFile}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newAuth(t, d, tt.changes)
			u, err := a.Authenticate(context.Background(), sambatest.UserAlice, d.Users[sambatest.UserAlice])
			if tt.tlsErr {
				var tlsErr *ldapauth.TLSError
				require.ErrorAs(t, err, &tlsErr)
				assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "alice", u.Username)
		})
	}
}
