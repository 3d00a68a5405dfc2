package ldapauth

import (
	"context"
	"slices"
)

var _ SyncStateStore = (*MemStore)(nil)

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
