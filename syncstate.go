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

// LoadSyncState implements [SyncStateStore].
func (s *MemStore) LoadSyncState(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state), nil
}

// SaveSyncState implements [SyncStateStore].
func (s *MemStore) SaveSyncState(_ context.Context, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = slices.Clone(state)
	return nil
}

// LookupUsers implements [ChangeStore].
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

// LoadEntries implements [ChangeStore].
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

// SaveChanges implements [ChangeStore].
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
