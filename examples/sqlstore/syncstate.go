package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-ldapauth/ldapauth"
)

var _ ldapauth.SyncStateStore = (*Store)(nil)

// LoadSyncState implements [ldapauth.SyncStateStore]: the state last saved,
// or nil.
func (s *Store) LoadSyncState(ctx context.Context) ([]byte, error) {
	var state []byte
	err := s.db.QueryRowContext(ctx, `SELECT state FROM ldap_sync_state WHERE id = 1`).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("sqlstore: load sync state: %w", err)
	}
	return state, nil
}

// SaveSyncState implements [ldapauth.SyncStateStore]: it replaces the state
// in one statement.
func (s *Store) SaveSyncState(ctx context.Context, state []byte) error {
	if state == nil {
		state = []byte{}
	}
	return s.inTx(ctx, "save sync state", func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO ldap_sync_state (id, state, updated_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, state, s.now().UnixMicro())
		return err
	})
}
