package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// RelationSyncer runs after every successful login
// (LDAP_AUTH_SYNC_USER_RELATIONS), with the user saved and a [Directory] on
// the login's connection, valid only during the call. Safe for concurrent
// use.
type RelationSyncer interface {
	SyncRelations(ctx context.Context, cfg *Config, u *User, dir Directory) error
}

// RelationSyncerFunc adapts a function to [RelationSyncer].
type RelationSyncerFunc func(ctx context.Context, cfg *Config, u *User, dir Directory) error

func (f RelationSyncerFunc) SyncRelations(ctx context.Context, cfg *Config, u *User, dir Directory) error {
	return f(ctx, cfg, u, dir)
}

var (
	_ Directory = DirectoryFunc(nil)
	_ Directory = (*conn)(nil)

	_ RelationSyncer = RelationSyncerFunc(nil)
	_ GroupSyncer    = NoRelations{}
	_ GroupSyncer    = SyncUserGroups{}
)

// GroupSyncer is a RelationSyncer saying whether it keeps the synced groups
// and organisation join, so that Sync plans them itself (docs/sync.md).
type GroupSyncer interface {
	RelationSyncer
	SyncsGroups() bool
}

// NoRelations does nothing: django_python3_ldap.utils.sync_user_relations,
// the default.
type NoRelations struct{}

func (NoRelations) SyncRelations(context.Context, *Config, *User, Directory) error { return nil }

func (NoRelations) String() string { return "django_python3_ldap.utils.sync_user_relations" }

func (NoRelations) SyncsGroups() bool { return false }

// SyncUserGroups is Flagsmith's sync_user_groups: on every login the user
// joins Config.OrganisationID and the synced groups it is a member of, and
// leaves the others (memberOf, or the group's entry; docs/login.md).
type SyncUserGroups struct{}

func (SyncUserGroups) String() string { return "flagsmith_ldap.ldap.sync_user_groups" }

func (SyncUserGroups) SyncsGroups() bool { return true }

func (SyncUserGroups) SyncRelations(ctx context.Context, cfg *Config, u *User, dir Directory) error {
	if ld, ok := dir.(*loginDirectory); ok && &ld.a.cfg == cfg {
		return syncGroups(ctx, cfg, ld.a.synced, ld.check(u))
	}
	return syncGroups(ctx, cfg, groupRefs(cfg.SyncedGroups), newMemberCheck(cfg, u, dir))
}

// loginDirectory is the Directory a login hands its relation syncer: the
// login's connection, with what the login already knows.
type loginDirectory struct {
	*conn
	a      *Authenticator
	member *memberCheck // the login group's check of the user, or nil
}

// check is the membership check of u: the login group's when it was of u.
func (d *loginDirectory) check(u *User) *memberCheck {
	if d.member != nil && d.member.u == u {
		return d.member
	}
	return d.a.newMemberCheck(u, d.conn)
}

// syncGroups is [SyncUserGroups] over groups parsed beforehand, which an
// Authenticator does once, in New.
func syncGroups(ctx context.Context, cfg *Config, groups []groupRef, m *memberCheck) error {
	store := cfg.Store
	if store == nil {
		return configErr("the group syncer needs Config.Store", envSyncRelations)
	}
	username := m.u.Username
	if err := store.JoinOrganisation(ctx, username, cfg.OrganisationID); err != nil {
		return &StoreError{Op: "join organisation", Err: err}
	}
	for _, g := range groups {
		member, known, err := m.member(ctx, g)
		if err != nil {
			return err
		}
		if !known {
			// The directory neither listed nor confirmed the group (no
			// memberOf, and its entry not returned): leave it as it is.
			continue
		}
		if member {
			if err := store.SaveGroup(ctx, Group{DN: g.dn, Name: g.name}); err != nil {
				return &StoreError{Op: "save group", Err: err}
			}
		}
		if err := store.SetMember(ctx, g.dn, username, member); err != nil {
			return &StoreError{Op: "set member", Err: err}
		}
	}
	return nil
}

// groupRef is a configured group DN (LDAP_SYNCED_GROUPS, LDAP_LOGIN_GROUP)
// with what the membership checks derive from it, parsed once.
type groupRef struct {
	dn     string // as configured
	key    string // DNKey(dn)
	name   string // groupName(dn)
	base   string // domainOf(dn), where a walk looks for the groups above
	domain string // DNKey(base)
}

func newGroupRef(dn string) groupRef {
	base := domainOf(dn)
	return groupRef{dn: dn, key: DNKey(dn), name: groupName(dn), base: base, domain: DNKey(base)}
}

func groupRefs(dns []string) []groupRef {
	refs := make([]groupRef, len(dns))
	for i, dn := range dns {
		refs[i] = newGroupRef(dn)
	}
	return refs
}

// memberCheck answers whether one user belongs to groups. It builds what
// every group's check shares once: the user's memberOf values as DN keys,
// the DN key of the user's domain, and for [NestedGroupsWalk] the groups
// above the user.
type memberCheck struct {
	cfg      *Config
	u        *User
	dir      Directory // nil: no group entry is read
	memberOf map[string]struct{}
	domain   string // DNKey(domainOf(u.DN))

	// ancestors holds, by the DN key of a walk's base, the DN keys of the
	// groups above the user there (NestedGroupsWalk), each walked once.
	ancestors map[string]map[string]struct{}
	// tokens caches primary group tokens by group DN key across logins:
	// the Authenticator's, or nil.
	tokens *sync.Map
	// transitive: the user's memberOf lists nested groups too (389
	// Directory Server's memberOf plugin), so a walk finds nothing more.
	transitive bool
}

// newMemberCheck is the membership check of u on a login of a, sharing a's
// cache of primary group tokens.
func (a *Authenticator) newMemberCheck(u *User, dir Directory) *memberCheck {
	m := newMemberCheck(&a.cfg, u, dir)
	m.tokens = &a.groupTokens
	m.transitive = a.knownDirectoryType() == Directory389
	return m
}

func newMemberCheck(cfg *Config, u *User, dir Directory) *memberCheck {
	m := &memberCheck{cfg: cfg, u: u, dir: dir, domain: DNKey(domainOf(u.DN))}
	if u.hasMemberOf {
		m.memberOf = make(map[string]struct{}, len(u.Groups))
		for _, g := range u.Groups {
			m.memberOf[DNKey(g)] = struct{}{}
		}
	}
	return m
}

// member reports whether the user belongs to g: directly, through nested
// groups as cfg.NestedGroups says, or because g is the user's Active
// Directory primary group. known is false when the direct check could not
// tell (see direct) and no other way makes the user a member.
func (m *memberCheck) member(ctx context.Context, g groupRef) (member, known bool, err error) {
	member, known, err = m.direct(ctx, g)
	if err != nil || member {
		return member, known, err
	}
	indirect, err := m.indirect(ctx, g)
	if err != nil || indirect {
		return indirect, indirect, err
	}
	return false, known, nil
}

// direct reports whether the user belongs to g directly, by
// [memberByRule]: the group's entry is read (to the end of Active
// Directory's ranges) only when the user's entry has no memberOf. known is
// false when neither source can tell: no memberOf, and the group's entry
// was not returned (noSuchObject, or an empty answer). An entry without
// member values lists nobody.
func (m *memberCheck) direct(ctx context.Context, g groupRef) (member, known bool, err error) {
	u := m.u
	var entry *groupEntry
	if !u.hasMemberOf && m.dir != nil {
		dns, uids, state, err := readGroup(ctx, m.dir, g.dn)
		if err != nil {
			return false, false, err
		}
		// An entry without member values is an empty group to a login
		// once Compare confirms it (an emptied posixGroup removes its
		// members at their next login; a member an access rule hides
		// does not); the batch sync, which would empty the group for
		// every member at once, keeps them (see syncRun.weigh).
		if state != groupFound && state != groupNoMemberValues {
			return false, false, nil
		}
		if state == groupNoMemberValues {
			if empty, err := m.emptyConfirmed(ctx, g); err != nil || !empty {
				return false, false, err
			}
		}
		entry = &groupEntry{dns: dns, uids: uids}
	}
	_, inMemberOf := m.memberOf[g.key]
	member, known = memberByRule(u.hasMemberOf, inMemberOf, entry, u.DN, u.Username)
	return member, known, nil
}

// memberByRule is the one membership rule of ldapauth, shared by the login
// syncer ([SyncUserGroups]) and the batch sync ([Authenticator.Sync]):
//   - a user entry that carries memberOf is a member exactly when memberOf
//     lists the group (inMemberOf, DNs compared parsed, case-insensitively);
//   - an entry without memberOf (a directory without the memberOf overlay)
//     is a member when the group's own entry g lists the user's DN in
//     member or uniqueMember, or the username in memberUid.
//
// known is false when neither source can tell: no memberOf and no group
// entry (g nil). The login syncer and the batch sync then both leave the
// membership as it is.
func memberByRule(hasMemberOf, inMemberOf bool, g *groupEntry, userDN, username string) (member, known bool) {
	if hasMemberOf {
		return inMemberOf, true
	}
	if g == nil {
		return false, false
	}
	return g.lists(userDN, username), true
}

// groupState is what a base search on a group DN says about the group.
type groupState int

const (
	// groupFound: the entry was returned (with member values, when they
	// were asked for).
	groupFound groupState = iota
	// groupNoSuchObject: the server answered noSuchObject (32). A real
	// directory answers so for a DN that does not exist, and OpenLDAP also
	// for an entry an access rule hides from the reader: on its own, not
	// a reason to remove anything (the batch sync asks for proof,
	// proveGone).
	groupNoSuchObject
	// groupUnconfirmed: success without an entry. GLAuth answers so for a
	// missing DN, and any server may when an ACL hides the entry: not a
	// reason to remove anything.
	groupUnconfirmed
	// groupNoMemberValues: the entry was returned without any member,
	// uniqueMember or memberUid attribute, as when an access rule hides
	// them (or the group is empty, as Active Directory or a posixGroup
	// returns it): it confirms nobody's membership either way.
	groupNoMemberValues
)

// groupEntry holds a group entry's member values.
type groupEntry struct {
	dns  []string // member and uniqueMember values (user DNs)
	uids []string // memberUid values (usernames)

	// Built by index for the batch sync, where many users are checked
	// against one entry.
	dnKeys  map[string]struct{}
	uidKeys map[string]struct{}
}

// lists reports whether the entry names the user by DN or by username.
func (g *groupEntry) lists(userDN, username string) bool {
	if g.dnKeys != nil {
		_, byDN := g.dnKeys[DNKey(userDN)]
		_, byUID := g.uidKeys[strings.ToLower(username)]
		return byDN || byUID
	}
	if containsDN(g.dns, userDN) {
		return true
	}
	for _, uid := range g.uids {
		if strings.EqualFold(uid, username) {
			return true
		}
	}
	return false
}

// index prepares the entry for many lookups of the users whose DN keys
// (DNKey) are in wantDNs and lower-case usernames in wantUIDs, and of no
// other: it keeps the keys of those users it lists, not the whole member
// list, and drops the values. The batch sync, which knows beforehand which
// users it will ask about, holds no more than that while it reads a group
// of any size.
func (g *groupEntry) index(wantDNs, wantUIDs map[string]struct{}) {
	g.dnKeys = map[string]struct{}{}
	if len(wantDNs) > 0 {
		for _, dn := range g.dns {
			k := DNKey(dn)
			if _, ok := wantDNs[k]; ok {
				g.dnKeys[k] = struct{}{}
			}
		}
	}
	g.uidKeys = map[string]struct{}{}
	if len(wantUIDs) > 0 {
		for _, uid := range g.uids {
			k := strings.ToLower(uid)
			if _, ok := wantUIDs[k]; ok {
				g.uidKeys[k] = struct{}{}
			}
		}
	}
	g.dns, g.uids = nil, nil
}

// memberAttrs are the attributes of a group entry that list its members.
var memberAttrs = []string{"member", "uniqueMember", "memberUid"}

// readGroupEntry reads the group's entry with a base search: with its
// member values when members is true (see [readGroup]), with no attribute
// otherwise. The entry is nil unless the state is groupFound.
func readGroupEntry(ctx context.Context, dir Directory, groupDN string, members bool) (*groupEntry, groupState, error) {
	if members {
		dns, uids, state, err := readGroup(ctx, dir, groupDN)
		if err != nil || state != groupFound {
			return nil, state, err
		}
		return &groupEntry{dns: dns, uids: uids}, groupFound, nil
	}
	res, err := dir.Search(ctx, groupSearch(groupDN, []string{"1.1"})) // RFC 4511: no attributes
	if err != nil {
		state, err := groupSearchError(ctx, groupDN, err)
		return nil, state, err
	}
	if len(res.Entries) == 0 {
		return nil, groupUnconfirmed, nil
	}
	return &groupEntry{}, groupFound, nil
}

// groupSearch is the base search of a group entry for attrs.
func groupSearch(groupDN string, attrs []string) *ldap.SearchRequest {
	return ldap.NewSearchRequest(groupDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", attrs, nil)
}

// groupSearchError reads the error of a group's base search: noSuchObject
// is groupNoSuchObject, anything else an error.
func groupSearchError(ctx context.Context, groupDN string, err error) (groupState, error) {
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return groupNoSuchObject, nil
	}
	if ctx.Err() != nil {
		return 0, ctxError(ctx)
	}
	return 0, wrap(classifyNetwork(err), "read members of %s", groupDN)
}

// rangeOption matches the range option of an attribute description in an
// answer, as in member;range=0-1499 or member;range=1500-*.
var rangeOption = regexp.MustCompile(`(?i);range=(\d+)-(\d+|\*)`)

// errRange reports a ranged answer that does not advance.
var errRange = errors.New("the server's ranged answer does not advance")

// readGroup reads the group entry groupDN with a base search and returns
// its member and uniqueMember values (DNs), its memberUid values
// (usernames), and what the answer says about the group. Where Active
// Directory answers with at most 1500 values at a time
// (member;range=0-1499), it reads the following ranges to the end,
// continuing from the answer already received. The values are nil unless
// the state is groupFound; an entry returned without any of the member
// attributes is groupNoMemberValues.
func readGroup(ctx context.Context, dir Directory, groupDN string) (members, uids []string, state groupState, err error) {
	attrs := memberAttrs
	listed := false
	for rounds := 0; len(attrs) > 0; rounds++ {
		res, err := dir.Search(ctx, groupSearch(groupDN, attrs))
		if err != nil {
			state, err := groupSearchError(ctx, groupDN, err)
			return nil, nil, state, err
		}
		if len(res.Entries) == 0 {
			// An empty answer: GLAuth's for a missing DN, or an ACL hiding
			// the entry (or, past the first round, the entry gone meanwhile).
			return nil, nil, groupUnconfirmed, nil
		}
		attrs = nil
		for _, e := range res.Entries {
			for _, a := range e.Attributes {
				listed = listed || len(a.Values) > 0
				name, _, _ := strings.Cut(a.Name, ";")
				if strings.EqualFold(name, "memberUid") {
					uids = append(uids, a.Values...)
				} else {
					members = append(members, a.Values...)
				}
				m := rangeOption.FindStringSubmatch(a.Name)
				if m == nil || m[2] == "*" {
					continue
				}
				lo, _ := strconv.Atoi(m[1])
				hi, err := strconv.Atoi(m[2])
				if err != nil || hi < lo || len(a.Values) == 0 || rounds > 1<<16 {
					return nil, nil, 0, fmt.Errorf("ldapauth: read members of %s: %w: %s", groupDN, errRange, a.Name)
				}
				attrs = append(attrs, name+";range="+strconv.Itoa(hi+1)+"-*")
			}
		}
	}
	if !listed {
		return nil, nil, groupNoMemberValues, nil
	}
	return members, uids, groupFound, nil
}

// containsDN reports whether dns holds dn, compared as parsed DNs,
// case-insensitively.
func containsDN(dns []string, dn string) bool {
	want, err := ldap.ParseDN(dn)
	if err != nil {
		return false
	}
	for _, d := range dns {
		if strings.EqualFold(d, dn) {
			return true
		}
		if got, err := ldap.ParseDN(d); err == nil && got.EqualFold(want) {
			return true
		}
	}
	return false
}
