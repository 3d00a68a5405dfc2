package ldapauth

import (
	"context"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// UserStore is where ldapauth writes the users and groups it learns from the
// directory: the caller's own user database. ldapauth never deletes anything
// it did not write: every user it saves is directory-managed, and only those
// are ever removed by the sync job.
//
// Contract:
//   - Usernames are keys compared case-insensitively ([strings.EqualFold]);
//     group DNs are keys compared as parsed DNs, case-insensitively. The
//     Authenticator always passes the directory's spelling.
//   - Every method is idempotent: saving an existing user updates it,
//     deleting a missing user or group, adding an existing membership and
//     removing a missing one all succeed and change nothing.
//   - Methods are called concurrently (one Authenticator serves many logins
//     at once) and must be safe for concurrent use.
//   - A method that returns an error must have changed nothing, or have made
//     a change that a retry completes.
//   - A user is saved before it joins an organisation or is added to a
//     group: the Authenticator calls SaveUser first, at a login and in
//     [Authenticator.Sync] (CreateUsers included). A store may therefore
//     refuse JoinOrganisation and SetMember(..., true) for a user it does
//     not hold, as a foreign key would (MemStore and examples/sqlstore
//     do); one that accepts them must not make the user directory-managed
//     by it (Users streams saved users only). Removing a membership
//     of a user it does not hold succeeds.
type UserStore interface {
	// SaveUser creates or updates the directory-managed user u.Username,
	// overwriting its mapped fields (u.Fields). A new user gets no usable
	// local password.
	SaveUser(ctx context.Context, u *User) error
	// DeleteUser removes a directory-managed user with its memberships.
	DeleteUser(ctx context.Context, username string) error
	// JoinOrganisation adds the saved user to the organisation. It may
	// refuse a user the store does not hold.
	JoinOrganisation(ctx context.Context, username, organisationID string) error
	// SaveGroup creates the group g or updates its name.
	SaveGroup(ctx context.Context, g Group) error
	// DeleteGroup removes a group with its memberships.
	DeleteGroup(ctx context.Context, dn string) error
	// SetMember adds (member true) or removes (false) a user from a group.
	// Adding to a group that does not exist is an error; adding a user the
	// store does not hold may be one.
	SetMember(ctx context.Context, groupDN, username string, member bool) error
	// Users streams the directory-managed users with what the store holds
	// of them, for the sync job to compare with the directory. The sync
	// keeps a few bytes per user, not the users: a store streams them (a
	// database cursor), in any order, each user once. An error ends the
	// sequence (the sync then aborts). The sequence is read once per run,
	// sometimes a second time for the few users about to be removed.
	Users(ctx context.Context) iter.Seq2[StoredUser, error]
	// Groups streams the groups with their members, each group once, in
	// any order; an error ends the sequence.
	Groups(ctx context.Context) iter.Seq2[GroupMembers, error]
}

// Group is a directory group as held by the store. The DN is its identity;
// the name is the value of the DN's first RDN (CN=Readers,CN=Roles,... gives
// Readers).
type Group struct {
	// DN identifies the group, as configured in LDAP_SYNCED_GROUPS.
	DN string `json:"dn"`
	// Name is the value of the DN's first RDN.
	Name string `json:"name"`
}

// StoredUser is what a store holds of a directory-managed user, for the
// sync to compare with the directory: [Authenticator.Sync] writes and
// reports only users whose DN or fields changed and organisation joins that
// are missing, so a second sync is a no-op.
type StoredUser struct {
	// Username is the user's key, as saved.
	Username string
	// DN is the user's entry as last saved.
	DN string
	// Fields are the mapped fields as last saved.
	Fields map[string]string
	// Organisations are the organisation IDs the user joined.
	Organisations []string
}

// GroupMembers is a group and the usernames of its members.
type GroupMembers struct {
	Group
	// Members are the usernames of the group's members.
	Members []string
}

// GroupName returns the value of the first RDN of dn, the name a group gets
// in the store, or dn itself when it does not parse.
func GroupName(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return dn
	}
	return parsed.RDNs[0].Attributes[0].Value
}

// DNKey returns a key for dn that is equal for DNs that are equal as parsed
// DNs compared case-insensitively, as the [UserStore] contract compares group
// DNs: a store can index groups by it. A dn that does not parse is folded to
// lower case as it is.
func DNKey(dn string) string {
	if key, ok := plainDNKey(dn); ok {
		return key
	}
	return parsedDNKey(dn)
}

// plainDNKey is DNKey of a DN made only of printable ASCII without the
// characters that make ldap.ParseDN unescape, decode, split an RDN or
// fail (\ " # + ; < >), and whose every RDN is type=value with a type
// left after trimming spaces: the DNs directories send, which it folds
// without parsing, returning dn itself when it is already in that form
// (lower case, no space around a type or value, no = in a value). ok is
// false for any other DN, which parsedDNKey handles.
func plainDNKey(dn string) (key string, ok bool) {
	same, ok := scanPlainDN(dn)
	switch {
	case !ok:
		return "", false
	case same:
		return dn, true
	}
	var b strings.Builder
	b.Grow(len(dn) + 4)
	for i, rdn := range strings.Split(dn, ",") {
		if i > 0 {
			b.WriteByte(',')
		}
		typ, value, _ := strings.Cut(rdn, "=")
		b.WriteString(strings.ToLower(strings.Trim(typ, " ")))
		b.WriteByte('=')
		b.WriteString(EscapeDNValue(strings.ToLower(strings.Trim(value, " "))))
	}
	return b.String(), true
}

// scanPlainDN reports whether dn is a DN plainDNKey folds (ok), and whether
// it is its own key (same).
func scanPlainDN(dn string) (same, ok bool) {
	same = true // key == dn so far
	typed := false
	start := 0 // of the current type or value
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		switch {
		case c < ' ' || c > '~', c == '\\', c == '"', c == '#', c == '+', c == ';', c == '<', c == '>':
			return false, false
		case c >= 'A' && c <= 'Z':
			same = false
		case c == ' ':
			same = same && !trimmedSpace(dn, i, start, typed)
		case c == '=' && !typed:
			if strings.Trim(dn[start:i], " ") == "" {
				return false, false // an empty type
			}
			typed, start = true, i+1
		case c == '=':
			same = false // escaped in the key
		case c == ',':
			if !typed {
				return false, false // no type
			}
			typed, start = false, i+1
		}
	}
	return same, typed // not typed: empty, or no type at the end
}

// trimmedSpace reports whether the space at dn[i] is trimmed from the key:
// it starts or ends a type or value (start is where the current one began).
func trimmedSpace(dn string, i, start int, typed bool) bool {
	return i == start || i+1 == len(dn) || dn[i+1] == ',' || (!typed && dn[i+1] == '=')
}

// parsedDNKey is DNKey by ldap.ParseDN, for any DN.
func parsedDNKey(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	var b strings.Builder
	for i, rdn := range parsed.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		attrs := make([]string, len(rdn.Attributes))
		for j, a := range rdn.Attributes {
			attrs[j] = strings.ToLower(a.Type) + "=" + EscapeDNValue(strings.ToLower(a.Value))
		}
		slices.Sort(attrs)
		b.WriteString(strings.Join(attrs, "+"))
	}
	return b.String()
}

func normUser(name string) string { return strings.ToLower(name) }

// MemStore is an in-memory [UserStore], safe for concurrent use. It is meant
// for tests, the user's own included, and for trying ldapauth out.
type MemStore struct {
	mu      sync.Mutex
	users   map[string]*User             // by normUser
	orgs    map[string]map[string]bool   // normUser -> organisation IDs
	groups  map[string]Group             // by DNKey
	members map[string]map[string]string // DNKey -> normUser -> username
	state   []byte                       // SyncStateStore (syncstate.go)
	entries map[string][]byte            // ChangeStore: entry ID -> state
}

var _ UserStore = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{
		users:   map[string]*User{},
		orgs:    map[string]map[string]bool{},
		groups:  map[string]Group{},
		members: map[string]map[string]string{},
	}
}

// SaveUser implements [UserStore].
func (s *MemStore) SaveUser(_ context.Context, u *User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[normUser(u.Username)] = u.clone()
	return nil
}

// DeleteUser implements [UserStore].
func (s *MemStore) DeleteUser(_ context.Context, username string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := normUser(username)
	delete(s.users, key)
	delete(s.orgs, key)
	for _, m := range s.members {
		delete(m, key)
	}
	return nil
}

// JoinOrganisation implements [UserStore]. It refuses a user never saved,
// as a database with a foreign key would.
func (s *MemStore) JoinOrganisation(_ context.Context, username, organisationID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := normUser(username)
	if _, ok := s.users[key]; !ok {
		return errNoSuchUser
	}
	if s.orgs[key] == nil {
		s.orgs[key] = map[string]bool{}
	}
	s.orgs[key][organisationID] = true
	return nil
}

// SaveGroup implements [UserStore].
func (s *MemStore) SaveGroup(_ context.Context, g Group) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := DNKey(g.DN)
	s.groups[key] = g
	if s.members[key] == nil {
		s.members[key] = map[string]string{}
	}
	return nil
}

// DeleteGroup implements [UserStore].
func (s *MemStore) DeleteGroup(_ context.Context, dn string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := DNKey(dn)
	delete(s.groups, key)
	delete(s.members, key)
	return nil
}

// SetMember implements [UserStore]. Adding refuses a group or a user never
// saved, as a database with foreign keys would.
func (s *MemStore) SetMember(_ context.Context, groupDN, username string, member bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[DNKey(groupDN)]
	if !ok {
		if !member {
			return nil
		}
		return errNoSuchGroup
	}
	if _, saved := s.users[normUser(username)]; member && !saved {
		return errNoSuchUser
	}
	if member {
		m[normUser(username)] = username
	} else {
		delete(m, normUser(username))
	}
	return nil
}

// Users implements [UserStore]: a copy of each user, taken under the
// store's lock user by user, in no particular order. Fields is the store's
// own map, shared rather than copied: MemStore never modifies a stored
// user's map (SaveUser stores a clone in place of the old one), and the
// caller must not modify it either.
func (s *MemStore) Users(ctx context.Context) iter.Seq2[StoredUser, error] {
	return func(yield func(StoredUser, error) bool) {
		s.mu.Lock()
		keys := slices.Collect(maps.Keys(s.users))
		s.mu.Unlock()
		for _, key := range keys {
			if err := ctx.Err(); err != nil {
				yield(StoredUser{}, err)
				return
			}
			s.mu.Lock()
			u, ok := s.users[key]
			var su StoredUser
			if ok {
				su = StoredUser{Username: u.Username, DN: u.DN, Fields: u.Fields, Organisations: slices.Sorted(maps.Keys(s.orgs[key]))}
			}
			s.mu.Unlock()
			if ok && !yield(su, nil) {
				return
			}
		}
	}
}

// Groups implements [UserStore]: the groups sorted by DN, their members
// sorted.
func (s *MemStore) Groups(ctx context.Context) iter.Seq2[GroupMembers, error] {
	return func(yield func(GroupMembers, error) bool) {
		s.mu.Lock()
		groups := make([]GroupMembers, 0, len(s.groups))
		for key, g := range s.groups {
			groups = append(groups, GroupMembers{Group: g, Members: slices.Sorted(maps.Values(s.members[key]))})
		}
		s.mu.Unlock()
		slices.SortFunc(groups, func(a, b GroupMembers) int { return strings.Compare(a.DN, b.DN) })
		for _, g := range groups {
			if err := ctx.Err(); err != nil {
				yield(GroupMembers{}, err)
				return
			}
			if !yield(g, nil) {
				return
			}
		}
	}
}

// BatchStore is an optional interface of a [UserStore]: a store that
// implements it has [Authenticator.Sync] apply its changes in batches, each
// in one call (for a database, one transaction and a few multi-row
// statements), instead of one call per change. A store without it keeps
// working one call per change.
//
// Contract, beyond the [UserStore]'s:
//   - ApplyBatch applies the batch's changes as the UserStore methods would,
//     in the order of the Batch's fields (groups saved, users saved,
//     organisation joins, memberships added, memberships removed, groups
//     deleted, users deleted), with the same idempotence and the same
//     refusals (joining or adding a user the store does not hold and that
//     the batch does not save, adding to a group neither held nor saved).
//   - It is atomic: when it returns an error, the store is as before the
//     call; the sync stops there and the next run completes the work.
//   - It is called concurrently with the UserStore methods (logins) and must
//     be safe for that; the sync itself makes one call at a time.
//   - It must not keep or modify the Batch or anything it points to.
type BatchStore interface {
	UserStore
	ApplyBatch(ctx context.Context, b *Batch) error
}

// Batch is a bounded set of changes for [BatchStore.ApplyBatch], applied in
// the order of its fields. The sync makes batches of at most
// Config.SyncPageSize (or [DefaultSyncPageSize]) changes, except the batch
// of a page of users as it is read: the page's creates and updates with
// their organisation joins, up to twice the page size.
type Batch struct {
	SaveGroups    []Group
	SaveUsers     []*User
	Joins         []OrganisationJoin
	AddMembers    []Membership
	RemoveMembers []Membership
	DeleteGroups  []string // group DNs
	DeleteUsers   []string // usernames
}

// OrganisationJoin is a user joining an organisation, in a [Batch].
type OrganisationJoin struct {
	Username       string
	OrganisationID string
}

// Len is the number of changes in b.
func (b *Batch) Len() int {
	return len(b.SaveGroups) + len(b.SaveUsers) + len(b.Joins) + len(b.AddMembers) +
		len(b.RemoveMembers) + len(b.DeleteGroups) + len(b.DeleteUsers)
}

var _ BatchStore = (*MemStore)(nil)

// ApplyBatch implements [BatchStore]: it checks every refusal before it
// changes anything, so a refused batch changes nothing.
func (s *MemStore) ApplyBatch(_ context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	saved := make(map[string]bool, len(b.SaveUsers))
	for _, u := range b.SaveUsers {
		saved[normUser(u.Username)] = true
	}
	groups := make(map[string]bool, len(b.SaveGroups))
	for _, g := range b.SaveGroups {
		groups[DNKey(g.DN)] = true
	}
	held := func(name string) bool {
		_, ok := s.users[normUser(name)]
		return ok || saved[normUser(name)]
	}
	for _, j := range b.Joins {
		if !held(j.Username) {
			return errNoSuchUser
		}
	}
	for _, m := range b.AddMembers {
		if _, ok := s.groups[DNKey(m.GroupDN)]; !ok && !groups[DNKey(m.GroupDN)] {
			return errNoSuchGroup
		}
		if !held(m.Username) {
			return errNoSuchUser
		}
	}
	// Nothing below can fail.
	for _, g := range b.SaveGroups {
		key := DNKey(g.DN)
		s.groups[key] = g
		if s.members[key] == nil {
			s.members[key] = map[string]string{}
		}
	}
	for _, u := range b.SaveUsers {
		s.users[normUser(u.Username)] = u.clone()
	}
	for _, j := range b.Joins {
		key := normUser(j.Username)
		if s.orgs[key] == nil {
			s.orgs[key] = map[string]bool{}
		}
		s.orgs[key][j.OrganisationID] = true
	}
	for _, m := range b.AddMembers {
		s.members[DNKey(m.GroupDN)][normUser(m.Username)] = m.Username
	}
	for _, m := range b.RemoveMembers {
		delete(s.members[DNKey(m.GroupDN)], normUser(m.Username))
	}
	for _, dn := range b.DeleteGroups {
		delete(s.groups, DNKey(dn))
		delete(s.members, DNKey(dn))
	}
	for _, name := range b.DeleteUsers {
		key := normUser(name)
		delete(s.users, key)
		delete(s.orgs, key)
		for _, m := range s.members {
			delete(m, key)
		}
	}
	return nil
}
