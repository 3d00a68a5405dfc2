package ldapauth

import (
	"context"
	"hash/maphash"
	"iter"
	"maps"
	"slices"
)

// storeUser is what a run keeps of a directory-managed user of the store: a
// few words, not the user. The DN and fields the store holds are folded
// into fp; the few users whose stored DN or fields a run needs (those
// about to be removed, entries without a username to place, updates that
// keep unread fields) are read again from the store (storedDetails).
type storeUser struct {
	username string // as the store spells it
	fp       uint64 // fingerprint of the stored DN and mapped fields
	joined   bool   // the user joined the configured organisation
	present  bool   // the directory returned it
	// dn is the entry's DN, once returned, kept only for a user the store
	// has in a synced group (a membership removal's proof reads it).
	dn string
}

// storeUserSlab is how many storeUsers loadStore allocates at once.
const storeUserSlab = 1024

// loadStore streams the store's users into compact per-user state and
// reads its groups with their members.
func (r *syncRun) loadStore(ctx context.Context) error {
	r.users = map[string]*storeUser{}
	if err := r.addUsers(ctx, r.a.cfg.Store.Users(ctx)); err != nil {
		return err
	}
	r.report.StoreUsers = len(r.users)
	return r.loadGroups(ctx)
}

// addUsers keeps the compact state of the users streamed.
func (r *syncRun) addUsers(ctx context.Context, users iter.Seq2[StoredUser, error]) error {
	orgID := r.a.cfg.OrganisationID
	var slab []storeUser
	for u, err := range users {
		if err != nil {
			return r.storeError(ctx, "read users", err)
		}
		if len(slab) == 0 {
			slab = make([]storeUser, min(storeUserSlab, max(len(r.users), 16)))
		}
		su := &slab[0]
		slab = slab[1:]
		*su = storeUser{username: u.Username, fp: r.fingerprint(u.DN, u.Fields), joined: orgID != "" && slices.Contains(u.Organisations, orgID)}
		r.users[normUser(u.Username)] = su
	}
	return nil
}

// lookupUsers keeps the compact state of the stored users among names,
// looked up one by one ([ChangeStore]).
func (r *syncRun) lookupUsers(ctx context.Context, cs ChangeStore, names []string) error {
	if len(names) == 0 {
		return nil
	}
	return r.addUsers(ctx, cs.LookupUsers(ctx, names))
}

// loadGroups reads the store's groups with their members.
func (r *syncRun) loadGroups(ctx context.Context) error {
	for g, err := range r.a.cfg.Store.Groups(ctx) {
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
		for _, m := range g.Members {
			sg.members[normUser(m)] = struct{}{}
		}
	}
	return nil
}

// storeError is a failed read of the store, aborting the run.
func (r *syncRun) storeError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return r.abort(SyncReadStore, ctxError(ctx))
	}
	return r.abort(SyncReadStore, &StoreError{Op: op, Err: err})
}

// storedDetails reads the store's users again and returns, by normUser,
// what it holds of those the run kept (loadStore) and want selects. It
// costs a read of the store and the memory of the users selected only.
func (r *syncRun) storedDetails(ctx context.Context, want func(*storeUser) bool) (map[string]StoredUser, error) {
	out := map[string]StoredUser{}
	users := r.a.cfg.Store.Users
	if r.lookup != nil {
		// r.users holds only the users looked up: look those up again.
		var names []string
		for _, su := range r.users {
			if want(su) {
				names = append(names, su.username)
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
		key := normUser(u.Username)
		if su := r.users[key]; su != nil && want(su) {
			out[key] = u
		}
	}
	return out, nil
}

// inSyncedGroup reports whether the store has the user (normUser key) in a
// synced group.
func (r *syncRun) inSyncedGroup(key string) bool {
	for _, g := range r.groups {
		if _, ok := g.members[key]; ok {
			return true
		}
	}
	return false
}

// fingerprint folds a DN and mapped fields into 64 bits: equal for equal
// DNs (compared exactly, as saved) and equal field maps. Two different
// users' details collide with a chance of about 2^-64, which would skip
// that user's update until the entry changes again.
func (r *syncRun) fingerprint(dn string, fields map[string]string) uint64 {
	h := &r.hash
	h.Reset()
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

// entryFingerprint is the fingerprint of the DN and the fields a login
// would map from the entry (a field is present when its attribute has a
// value).
func (r *syncRun) entryFingerprint(e interface {
	GetEqualFoldAttributeValue(string) string
}, dn string) uint64 {
	if r.fieldNames == nil {
		r.fieldNames = slices.Sorted(maps.Keys(r.a.cfg.UserFields))
	}
	h := &r.hash
	h.Reset()
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

// newFingerprintHash is the hash of a run's fingerprints: one seed per
// run, since they are compared within the run only.
func newFingerprintHash() maphash.Hash {
	var h maphash.Hash
	h.SetSeed(maphash.MakeSeed())
	return h
}
