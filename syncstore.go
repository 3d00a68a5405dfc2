package ldapauth

import (
	"cmp"
	"context"
	"errors"
	"hash/maphash"
	"iter"
	"maps"
	"math/bits"
	"slices"
	"strings"
)

// storeUser is what a run keeps of a directory-managed user of the store:
// 24 bytes and no pointer, so a million of them are 24 MB the garbage
// collector never scans. The username is kept as a 64-bit key (userKey);
// its spelling, the DN and the fields are folded into fp. The few users
// whose stored details a run needs are read again from the store: those
// the read did not return (loadMissing), updates that keep unread fields
// (storedDetails).
type storeUser struct {
	key     uint64 // userKey of the username
	fp      uint64 // fingerprint of the stored username, DN and mapped fields
	joined  bool   // the user joined the configured organisation
	present bool   // the directory returned it
}

// userTable holds a run's storeUsers sorted by key, with an index of where
// each bucket of keys (their top bits) starts: the keys are uniformly
// spread hashes, so a lookup reads a bucket of about four rows.
type userTable struct {
	rows   []storeUser
	starts []uint32 // rows of bucket b: rows[starts[b]:starts[b+1]]
	shift  uint     // a key's bucket is key >> shift
	dirty  bool     // rows were added since build
}

// errKeyCollision: two stored usernames have the same 64-bit key.
var errKeyCollision = errors.New("ldapauth: two stored usernames share a key")

// add appends a row; get does not see it until build.
func (t *userTable) add(su storeUser) {
	t.rows = append(t.rows, su)
	t.dirty = true
}

// build sorts and indexes the rows. Two rows of one key are two stored
// usernames whose hashes collide (a chance of about n²/2^65 with n users)
// or one user streamed twice: errKeyCollision either way, and the run
// loads the store again under another seed.
func (t *userTable) build() error {
	if !t.dirty {
		return nil
	}
	t.dirty = false
	slices.SortFunc(t.rows, func(a, b storeUser) int { return cmp.Compare(a.key, b.key) })
	for i := 1; i < len(t.rows); i++ {
		if t.rows[i].key == t.rows[i-1].key {
			return errKeyCollision
		}
	}
	width := 0
	if n := len(t.rows) / 4; n > 0 {
		width = bits.Len(uint(n))
	}
	t.shift = uint(64 - width)
	t.starts = make([]uint32, 1<<width+1)
	b := 0
	for i, su := range t.rows {
		for ; b <= int(t.bucket(su.key)); b++ {
			t.starts[b] = uint32(i)
		}
	}
	for ; b < len(t.starts); b++ {
		t.starts[b] = uint32(len(t.rows))
	}
	return nil
}

func (t *userTable) bucket(key uint64) uint64 {
	if t.shift == 64 {
		return 0
	}
	return key >> t.shift
}

// get returns the row of key, or nil.
func (t *userTable) get(key uint64) *storeUser {
	if len(t.starts) == 0 {
		return nil
	}
	b := t.bucket(key)
	for i := t.starts[b]; i < t.starts[b+1]; i++ {
		if su := &t.rows[i]; su.key == key {
			return su
		} else if su.key > key {
			break
		}
	}
	return nil
}

func (t *userTable) len() int { return len(t.rows) }

// all yields every row, in key order.
func (t *userTable) all() iter.Seq[*storeUser] {
	return func(yield func(*storeUser) bool) {
		for i := range t.rows {
			if !yield(&t.rows[i]) {
				return
			}
		}
	}
}

// startLoad starts loadStore in the background, on a context the
// returned function cancels; awaitStore waits for it.
func (r *syncRun) startLoad(ctx context.Context) (cancel func()) {
	ctx, cancel = context.WithCancel(ctx)
	done := make(chan error, 1)
	r.loading = done
	go func() { done <- r.loadStore(ctx) }()
	return cancel
}

// awaitStore waits for the store's users and groups (startLoad) and
// returns the error loading them, if any. Nothing of the run's store
// state may be read before it returns.
func (r *syncRun) awaitStore() error {
	if r.loading != nil {
		r.loadErr = <-r.loading
		r.loading = nil
	}
	return r.loadErr
}

// storeReady reports, without waiting, whether startLoad's load is over
// (awaitStore then returns at once).
func (r *syncRun) storeReady() bool {
	if r.loading == nil {
		return true
	}
	select {
	case err := <-r.loading:
		r.loadErr, r.loading = err, nil
		return true
	default:
		return false
	}
}

// loadStore streams the store's users into compact per-user state and
// reads its groups with their members.
func (r *syncRun) loadStore(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		r.users = userTable{}
		err := r.addUsers(ctx, r.a.cfg.Store.Users(ctx))
		if !errors.Is(err, errKeyCollision) {
			if err != nil {
				return err
			}
			break
		}
		if attempt == 2 {
			// Three collisions in a row are no chance: a store that
			// streams a user twice.
			return r.storeError(ctx, "read users", errors.New("the store streamed a username twice"))
		}
		r.hash.SetSeed(maphash.MakeSeed())
	}
	r.report.StoreUsers = r.users.len()
	return r.loadGroups(ctx)
}

// addUsers keeps the compact state of the users streamed; with keepNames
// (an incremental run, whose users are few), their names too.
func (r *syncRun) addUsers(ctx context.Context, users iter.Seq2[StoredUser, error]) error {
	orgID := r.a.cfg.OrganisationID
	for u, err := range users {
		if err != nil {
			return r.storeError(ctx, "read users", err)
		}
		key := r.userKey(u.Username)
		if r.lookup != nil {
			if _, dup := r.details[key]; dup {
				continue // named by two changes
			}
			r.details[key] = StoredUser{Username: u.Username, DN: u.DN}
		}
		r.users.add(storeUser{key: key, fp: r.fingerprint(u.Username, u.DN, u.Fields), joined: orgID != "" && slices.Contains(u.Organisations, orgID)})
	}
	return r.users.build()
}

// lookupUsers keeps the compact state of the stored users among names,
// looked up one by one ([ChangeStore]).
func (r *syncRun) lookupUsers(ctx context.Context, cs ChangeStore, names []string) error {
	if err := r.addGroups(ctx, cs.LookupMembers(ctx, names)); err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	return r.addUsers(ctx, cs.LookupUsers(ctx, names))
}

// membershipTotal is the number of memberships of synced groups the store
// holds: counted in loadGroups, or, in lookup mode, kept in the state.
func (r *syncRun) membershipTotal() int {
	if r.lookup != nil {
		return r.memberships
	}
	n := 0
	for _, g := range r.groups {
		if g.inStore {
			n += len(g.members)
		}
	}
	return n
}

// membershipsAfter is the store's number of memberships of synced groups
// once the run's plan is applied: those a removed user or group held go
// with it. In lookup mode, the members of a removed group are not all
// known: the count is then 0, which only makes the guard stricter until a
// full refresh counts them again.
func (r *syncRun) membershipsAfter() int {
	rep := r.report
	if r.lookup != nil && len(rep.GroupsRemoved) > 0 {
		return 0
	}
	n := r.membershipTotal() + len(rep.MembershipsAdded) - len(rep.MembershipsRemoved)
	removed := map[string]bool{}
	for _, g := range rep.GroupsRemoved {
		removed[DNKey(g.DN)] = true
	}
	for _, g := range r.groups {
		if g.inStore && removed[g.ref.key] {
			n -= len(g.members)
			continue
		}
		for _, name := range rep.UsersRemoved {
			if _, ok := g.members[r.userKey(name)]; ok && g.inStore {
				n--
			}
		}
	}
	return max(0, n)
}

// loadGroups reads the store's groups with their members.
func (r *syncRun) loadGroups(ctx context.Context) error {
	return r.addGroups(ctx, r.a.cfg.Store.Groups(ctx))
}

// addGroups keeps the synced groups of those streamed, with their members'
// keys.
func (r *syncRun) addGroups(ctx context.Context, groups iter.Seq2[GroupMembers, error]) error {
	for g, err := range groups {
		if err != nil {
			return r.storeError(ctx, "read groups", err)
		}
		i, ok := r.groupIdx[DNKey(g.DN)]
		if !ok {
			r.others = append(r.others, g.Group)
			continue
		}
		sg := r.groups[i]
		sg.inStore, sg.group = true, g.Group
		if sg.members == nil {
			sg.members = make(map[uint64]struct{}, len(g.Members))
		}
		for _, m := range g.Members {
			sg.members[r.userKey(m)] = struct{}{}
		}
	}
	return nil
}

// storeError is a failed read of the store, aborting the run.
func (r *syncRun) storeError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return r.abort(syncReadStore, ctxError(ctx))
	}
	return r.abort(syncReadStore, &StoreError{Op: op, Err: err})
}

// storedDetails reads the store's users again and returns, by key, what it
// holds of those the run kept (loadStore) and want selects. It costs a
// read of the store and the memory of the users selected only.
func (r *syncRun) storedDetails(ctx context.Context, want func(*storeUser) bool) (map[uint64]StoredUser, error) {
	out := map[uint64]StoredUser{}
	users := r.a.cfg.Store.Users
	if r.lookup != nil {
		// r.users holds only the users looked up: look those up again.
		var names []string
		for su := range r.users.all() {
			if want(su) {
				names = append(names, r.details[su.key].Username)
			}
		}
		if len(names) == 0 {
			return out, nil
		}
		users = func(ctx context.Context) iter.Seq2[StoredUser, error] { return r.lookup.LookupUsers(ctx, names) }
	}
	for u, err := range users(ctx) {
		if err != nil {
			return nil, orCtxError(ctx, &StoreError{Op: "read users", Err: err})
		}
		key := r.userKey(u.Username)
		if su := r.users.get(key); su != nil && want(su) {
			out[key] = u
		}
	}
	return out, nil
}

// loadMissing keeps in r.details the username and DN of every stored user
// the read has not returned (so far), reading the store again when one is
// not there yet: a run that misses no user never does. Users only leave
// that set once the read is over, so the store is read at most once after
// it.
func (r *syncRun) loadMissing(ctx context.Context) error {
	need := func(su *storeUser) bool {
		_, ok := r.details[su.key]
		return !su.present && !ok
	}
	if !slices.ContainsFunc(r.users.rows, func(su storeUser) bool { return need(&su) }) {
		return nil
	}
	stored, err := r.storedDetails(ctx, need)
	if err != nil {
		return err
	}
	for key, u := range stored {
		r.details[key] = StoredUser{Username: u.Username, DN: u.DN}
	}
	return nil
}

// missingUser is a stored user the read has not returned, with what
// loadMissing read of it.
type missingUser struct {
	*storeUser
	StoredUser
}

// missing returns the stored users the read has not returned (those
// loadMissing read), by username.
func (r *syncRun) missing() []missingUser {
	var out []missingUser
	for su := range r.users.all() {
		if d, ok := r.details[su.key]; ok && !su.present {
			out = append(out, missingUser{su, d})
		}
	}
	slices.SortFunc(out, func(a, b missingUser) int { return strings.Compare(normUser(a.Username), normUser(b.Username)) })
	return out
}

// fingerprint folds a stored user's username (as spelt), DN and mapped
// fields into 64 bits: equal for equal usernames and DNs (compared
// exactly, as saved) and equal field maps. Two different users' details
// collide with a chance of about 2^-64, which would skip that user's
// update until the entry changes again.
func (r *syncRun) fingerprint(username, dn string, fields map[string]string) uint64 {
	h := &r.hash
	h.Reset()
	h.WriteString(username)
	h.WriteByte(0)
	h.WriteString(dn)
	h.WriteByte(0)
	r.fieldKeys = r.fieldKeys[:0]
	for k := range fields {
		r.fieldKeys = append(r.fieldKeys, k)
	}
	slices.Sort(r.fieldKeys)
	for _, k := range r.fieldKeys {
		h.WriteString(k)
		h.WriteByte(0)
		h.WriteString(fields[k])
		h.WriteByte(0)
	}
	return h.Sum64()
}

// entryFingerprint is the fingerprint of the username, DN and the fields
// a login would map from the entry (a field is present when its attribute
// has a value).
func (r *syncRun) entryFingerprint(e interface {
	GetEqualFoldAttributeValue(string) string
}, username, dn string) uint64 {
	if r.fieldNames == nil {
		r.fieldNames = slices.Sorted(maps.Keys(r.a.cfg.UserFields))
	}
	h := &r.hash
	h.Reset()
	h.WriteString(username)
	h.WriteByte(0)
	h.WriteString(dn)
	h.WriteByte(0)
	for _, k := range r.fieldNames {
		v := e.GetEqualFoldAttributeValue(r.a.cfg.UserFields[k])
		if v == "" {
			continue
		}
		h.WriteString(k)
		h.WriteByte(0)
		h.WriteString(v)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// newFingerprintHash is the hash of a run's fingerprints and keys: one
// seed per run, since they are compared within the run only.
func newFingerprintHash() maphash.Hash {
	var h maphash.Hash
	h.SetSeed(maphash.MakeSeed())
	return h
}

// userKey is the key of a username (case-insensitive, as normUser) in the
// run: a 64-bit hash under the run's seed. Two stored usernames with one
// key make the run load the store again under another seed (build). A
// directory username that shares a stored user's key (a chance of about
// n²/2^65 per run with n users, and a new seed each run) is taken for
// that user in this run: the entry's user is saved (the fingerprints
// differ), while the stored user is kept and its membership and
// organisation join may wait for the next run. Two directory usernames
// that share a key are treated as one username on two entries: both
// kept unchanged, and reported.
func (r *syncRun) userKey(name string) uint64 {
	return maphash.String(r.hash.Seed(), normUser(name))
}

// keySet is a set of 64-bit keys (userKey): open addressing with linear
// probing in one slice with no pointer, kept at most three quarters full,
// so a million keys take 16 MB the collector never scans (a Go map of
// them took about 35 MB at its peak). Key 0 marks a free slot; the key 0
// itself is kept aside.
type keySet struct {
	slots   []uint64
	n       int
	hasZero bool
}

// add adds key and reports whether it was already there.
func (s *keySet) add(key uint64) (had bool) {
	if key == 0 {
		had, s.hasZero = s.hasZero, true
		return had
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
	}
	i, found := s.find(key)
	if !found {
		s.slots[i] = key
		s.n++
	}
	return found
}

// find returns the slot of key, or the free slot where it would go.
func (s *keySet) find(key uint64) (slot uint64, found bool) {
	mask := uint64(len(s.slots) - 1)
	for i := key & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case key:
			return i, true
		case 0:
			return i, false
		}
	}
}

// has reports whether key is in the set.
func (s *keySet) has(key uint64) bool {
	if key == 0 {
		return s.hasZero
	}
	if len(s.slots) == 0 {
		return false
	}
	_, found := s.find(key)
	return found
}

func (s *keySet) grow() {
	old := s.slots
	s.slots = make([]uint64, max(64, 2*len(old)))
	s.n = 0
	for _, k := range old {
		if k != 0 {
			s.add(k)
		}
	}
}
