package ldapauth

import (
	"context"
	"iter"
	"maps"
	"slices"
)

var (
	_ SyncStateStore = (*MemStore)(nil)
	_ ChangeStore    = (*MemStore)(nil)
)

func (s *MemStore) LoadSyncState(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state), nil
}

func (s *MemStore) SaveSyncState(_ context.Context, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = slices.Clone(state)
	return nil
}

func (s *MemStore) LookupUsers(ctx context.Context, usernames []string) iter.Seq2[StoredUser, error] {
	return func(yield func(StoredUser, error) bool) {
		seen := map[string]bool{}
		for _, name := range usernames {
			key := normUser(name)
			if seen[key] {
				continue
			}
			seen[key] = true
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

func (s *MemStore) LookupMembers(ctx context.Context, usernames []string) iter.Seq2[GroupMembers, error] {
	return func(yield func(GroupMembers, error) bool) {
		keys := make(map[string]bool, len(usernames))
		for _, n := range usernames {
			keys[normUser(n)] = true
		}
		s.mu.Lock()
		groups := make([]GroupMembers, 0, len(s.groups))
		for key, g := range s.groups {
			gm := GroupMembers{Group: g}
			for k := range keys {
				if name, ok := s.members[key][k]; ok {
					gm.Members = append(gm.Members, name)
				}
			}
			groups = append(groups, gm)
		}
		s.mu.Unlock()
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

func (s *MemStore) LoadEntries(_ context.Context, ids []string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ids == nil {
		out := make(map[string][]byte, len(s.entries))
		for id, e := range s.entries {
			out[id] = slices.Clone(e)
		}
		return out, nil
	}
	out := map[string][]byte{}
	for _, id := range ids {
		if e, ok := s.entries[id]; ok {
			out[id] = slices.Clone(e)
		}
	}
	return out, nil
}

func (s *MemStore) SaveChanges(_ context.Context, state []byte, entries map[string][]byte, deleted []string, replace bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if replace || s.entries == nil {
		s.entries = make(map[string][]byte, len(entries))
	}
	for _, id := range deleted {
		delete(s.entries, id)
	}
	for id, e := range entries {
		s.entries[id] = slices.Clone(e)
	}
	s.state = slices.Clone(state)
	return nil
}
