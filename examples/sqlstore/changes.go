package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/go-ldapauth/ldapauth"
)

var _ ldapauth.ChangeStore = (*Store)(nil)

// lookupChunk is how many keys one lookup query lists.
const lookupChunk = 500

// LookupUsers implements [ldapauth.ChangeStore]: the users among usernames,
// a query per 500 names.
func (s *Store) LookupUsers(ctx context.Context, usernames []string) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		keys := make([]string, 0, len(usernames))
		for _, n := range usernames {
			keys = append(keys, userKey(n))
		}
		slices.Sort(keys)
		for chunk := range slices.Chunk(slices.Compact(keys), lookupChunk) {
			where := "u.username_key IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ") + ")"
			if !s.streamUsers(ctx, where, anys(chunk), yield) {
				return
			}
		}
	}
}

// LoadEntries implements [ldapauth.ChangeStore]: the rows of
// ldap_sync_entries for ids (every row for nil).
func (s *Store) LoadEntries(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	load := func(query string, args ...any) error {
		rows, err := s.db.QueryContext(ctx, s.dialect.rebind(query), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var state []byte
			if err := rows.Scan(&id, &state); err != nil {
				return err
			}
			out[id] = state
		}
		return rows.Err()
	}
	if ids == nil {
		if err := load(`SELECT entry_id, state FROM ldap_sync_entries`); err != nil {
			return nil, fmt.Errorf("sqlstore: load sync entries: %w", err)
		}
		return out, nil
	}
	for chunk := range slices.Chunk(ids, lookupChunk) {
		list := strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ")
		if err := load(`SELECT entry_id, state FROM ldap_sync_entries WHERE entry_id IN (`+list+`)`, anys(chunk)...); err != nil {
			return nil, fmt.Errorf("sqlstore: load sync entries: %w", err)
		}
	}
	return out, nil
}

// SaveChanges implements [ldapauth.ChangeStore]: the state and the entries
// in one transaction.
func (s *Store) SaveChanges(ctx context.Context, state []byte, entries map[string][]byte, deleted []string, replace bool) error {
	if state == nil {
		state = []byte{}
	}
	return s.inTx(ctx, "save sync changes", func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM ldap_sync_entries`); err != nil {
				return err
			}
		} else if len(deleted) > 0 {
			if err := s.inList(ctx, tx, `DELETE FROM ldap_sync_entries WHERE entry_id IN (*)`, nil, deleted); err != nil {
				return err
			}
		}
		rows := make([][]any, 0, len(entries))
		for _, id := range slices.Sorted(maps.Keys(entries)) {
			rows = append(rows, []any{id, entries[id]})
		}
		if err := s.insertRows(ctx, tx, `INSERT INTO ldap_sync_entries (entry_id, state)`,
			`ON CONFLICT (entry_id) DO UPDATE SET state = excluded.state`, rows); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO ldap_sync_state (id, state, updated_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, state, s.now().UnixMicro())
		return err
	})
}
