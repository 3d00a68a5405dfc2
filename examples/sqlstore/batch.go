package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/go-ldapauth/ldapauth"
)

var _ ldapauth.BatchStore = (*Store)(nil)

// maxParams bounds the placeholders of one statement: below SQLite's limit
// (32766) and PostgreSQL's (65535).
const maxParams = 30000

// ApplyBatch implements [ldapauth.BatchStore]: the whole batch in one
// transaction, a few multi-row statements per kind of change (INSERT ...
// ON CONFLICT upserts, DELETE ... IN), so a sync writes a page of changes
// in a handful of round trips. A refusal ([ErrNoSuchUser],
// [ErrNoSuchGroup]) or any failure rolls the whole batch back.
func (s *Store) ApplyBatch(ctx context.Context, b *ldapauth.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	err := s.inTx(ctx, "apply batch", func(tx *sql.Tx) error {
		if s.dialect.name == postgresDialect.name && additive(b) {
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
		}
		for _, step := range []func(context.Context, *sql.Tx, *ldapauth.Batch) error{
			s.batchSaveGroups, s.batchSaveUsers, s.batchJoins, s.batchAddMembers,
			s.batchRemoveMembers, s.batchDeleteGroups, s.batchDeleteUsers,
		} {
			if err := step(ctx, tx, b); err != nil {
				return err
			}
		}
		return nil
	})
	if isForeignKeyViolation(err) {
		return s.refusal(ctx, b, err)
	}
	return err
}

// additive reports whether the batch only adds or updates: saves, joins,
// and memberships added. PostgreSQL commits such a batch without waiting
// for its WAL to reach the disk (synchronous_commit = off for its
// transaction, about half a first sync's wall time on a busy disk). A
// server crash can lose only the last such commits, never a part of one,
// and never one followed by a durable commit (the WAL is flushed in
// order, so the change-driven sync's state, saved after its batches,
// implies them): the store is then as a sync stopped part-way leaves it,
// which the next run completes. A batch that removes anything (a user, a
// membership, a group) is durable when ApplyBatch returns: a user removed
// from the directory stays signed out. SQLite's synchronous=NORMAL in WAL
// mode (see Open) is the like trade for every commit.
func additive(b *ldapauth.Batch) bool {
	return len(b.RemoveMembers) == 0 && len(b.DeleteGroups) == 0 && len(b.DeleteUsers) == 0
}

// isForeignKeyViolation reports whether err is the database refusing a row
// whose foreign key names no row: a join or membership of a user, or a
// membership in a group, the store does not hold.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503" // foreign_key_violation
	}
	var liteErr *sqlite.Error
	return errors.As(err, &liteErr) && liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// refusal names what a batch refused by a foreign key lacked: the first
// group or user, in the order the batch names them, that neither the store
// nor the batch holds, as [ErrNoSuchGroup] or [ErrNoSuchUser]. The batch
// inserts its joins and memberships without looking first (the foreign
// keys check every row anyway), so only a refused batch pays for the
// lookups. The batch is rolled back already: what the store holds is read
// afresh. If another writer added the missing row meanwhile, err is
// returned as it was.
func (s *Store) refusal(ctx context.Context, b *ldapauth.Batch, err error) error {
	saved := map[string]bool{}
	for _, u := range b.SaveUsers {
		saved[userKey(u.Username)] = true
	}
	savedGroups := map[string]bool{}
	for _, g := range b.SaveGroups {
		savedGroups[ldapauth.DNKey(g.DN)] = true
	}
	var missing error
	lookErr := s.inTx(ctx, "apply batch", func(tx *sql.Tx) error {
		users := func(names []string) error { // the first of names neither held nor saved
			keys := make([]string, len(names))
			for i, n := range names {
				keys[i] = userKey(n)
			}
			held, err := s.present(ctx, tx, "ldap_users", "username_key", keys)
			for i, key := range keys {
				if err == nil && !held[key] && !saved[key] {
					missing = fmt.Errorf("%w: %q", ErrNoSuchUser, names[i])
					break
				}
			}
			return err
		}
		var joined, added, groups []string
		for _, j := range b.Joins {
			joined = append(joined, j.Username)
		}
		for _, m := range b.AddMembers {
			added = append(added, m.Username)
			groups = append(groups, m.GroupDN)
		}
		if err := users(joined); err != nil || missing != nil {
			return err
		}
		gkeys := make([]string, len(groups))
		for i, dn := range groups {
			gkeys[i] = ldapauth.DNKey(dn)
		}
		held, err := s.present(ctx, tx, "ldap_groups", "dn_key", gkeys)
		if err != nil {
			return err
		}
		for i, key := range gkeys {
			if !held[key] && !savedGroups[key] {
				missing = fmt.Errorf("%w: %s", ErrNoSuchGroup, groups[i])
				return nil
			}
		}
		return users(added)
	})
	if lookErr != nil || missing == nil {
		return err
	}
	return missing
}

// insertRows runs head + " VALUES (...), (...) " + tail for rows, as few
// statements as maxParams allows.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, head, tail string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	cols := len(rows[0])
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	for chunk := range slices.Chunk(rows, maxParams/cols) {
		var q strings.Builder
		q.WriteString(head)
		q.WriteString(" VALUES ")
		args := make([]any, 0, len(chunk)*cols)
		for i, row := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(tuple)
			args = append(args, row...)
		}
		q.WriteString(" ")
		q.WriteString(tail)
		if _, err := s.exec(ctx, tx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// inList runs query, whose "IN (*)" is replaced by a list of placeholders,
// with prefix args and then keys, as few statements as maxParams allows.
func (s *Store) inList(ctx context.Context, tx *sql.Tx, query string, prefix []any, keys []string) error {
	for chunk := range slices.Chunk(keys, maxParams-len(prefix)) {
		list := "IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ") + ")"
		args := append(slices.Clone(prefix), anys(chunk)...)
		if _, err := s.exec(ctx, tx, strings.Replace(query, "IN (*)", list, 1), args...); err != nil {
			return err
		}
	}
	return nil
}

// present returns which of keys the table holds in column, inside tx.
func (s *Store) present(ctx context.Context, tx *sql.Tx, table, column string, keys []string) (map[string]bool, error) {
	found := make(map[string]bool, len(keys))
	for chunk := range slices.Chunk(keys, maxParams) {
		list := strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ")
		got, err := queryStrings(ctx, tx, s.dialect.rebind("SELECT "+column+" FROM "+table+" WHERE "+column+" IN ("+list+")"), anys(chunk)...)
		if err != nil {
			return nil, err
		}
		for _, k := range got {
			found[k] = true
		}
	}
	return found, nil
}

func anys(keys []string) []any {
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}

func (s *Store) batchSaveGroups(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	byKey := map[string]ldapauth.Group{} // the last of a key wins: PostgreSQL refuses to upsert a row twice in one statement
	for _, g := range b.SaveGroups {
		byKey[ldapauth.DNKey(g.DN)] = g
	}
	now := s.now()
	var rows [][]any
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		g := byKey[key]
		rows = append(rows, []any{key, g.DN, g.Name, now, now})
	}
	return s.insertRows(ctx, tx, `INSERT INTO ldap_groups (dn_key, dn, name, created_at, updated_at)`,
		`ON CONFLICT (dn_key) DO UPDATE SET dn = excluded.dn, name = excluded.name, updated_at = excluded.updated_at`, rows)
}

func (s *Store) batchSaveUsers(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	byKey := map[string]*ldapauth.User{}
	for _, u := range b.SaveUsers {
		byKey[userKey(u.Username)] = u
	}
	if len(byKey) == 0 {
		return nil
	}
	now := s.now()
	users := make([][]any, 0, len(byKey))
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		u := byKey[key]
		fields, err := encodeFields(u.Fields)
		if err != nil {
			return err
		}
		users = append(users, []any{key, u.Username, u.DN, fields, now, now})
	}
	return s.insertRows(ctx, tx, `INSERT INTO ldap_users (username_key, username, dn, fields, created_at, updated_at)`,
		`ON CONFLICT (username_key) DO UPDATE SET username = excluded.username, dn = excluded.dn, fields = excluded.fields, updated_at = excluded.updated_at`, users)
}

func (s *Store) batchJoins(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	if len(b.Joins) == 0 {
		return nil
	}
	now := s.now()
	rows := make([][]any, len(b.Joins))
	for i, j := range b.Joins {
		rows[i] = []any{j.OrganisationID, userKey(j.Username), now}
	}
	return s.insertRows(ctx, tx, `INSERT INTO organisation_members (organisation_id, username_key, joined_at)`,
		`ON CONFLICT (organisation_id, username_key) DO NOTHING`, rows)
}

func (s *Store) batchAddMembers(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	if len(b.AddMembers) == 0 {
		return nil
	}
	rows := make([][]any, len(b.AddMembers))
	for i, m := range b.AddMembers {
		rows[i] = []any{ldapauth.DNKey(m.GroupDN), userKey(m.Username), m.Username}
	}
	return s.insertRows(ctx, tx, `INSERT INTO ldap_group_members (dn_key, username_key, username)`,
		`ON CONFLICT (dn_key, username_key) DO NOTHING`, rows)
}

func (s *Store) batchRemoveMembers(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	byGroup := map[string][]string{} // DNKey -> user keys: synced groups are few
	for _, m := range b.RemoveMembers {
		key := ldapauth.DNKey(m.GroupDN)
		byGroup[key] = append(byGroup[key], userKey(m.Username))
	}
	for _, gkey := range slices.Sorted(maps.Keys(byGroup)) {
		if err := s.inList(ctx, tx, `DELETE FROM ldap_group_members WHERE dn_key = ? AND username_key IN (*)`,
			[]any{gkey}, byGroup[gkey]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) batchDeleteGroups(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	if len(b.DeleteGroups) == 0 {
		return nil
	}
	keys := make([]string, len(b.DeleteGroups))
	for i, dn := range b.DeleteGroups {
		keys[i] = ldapauth.DNKey(dn)
	}
	for _, q := range []string{
		`DELETE FROM ldap_group_members WHERE dn_key IN (*)`,
		`DELETE FROM ldap_groups WHERE dn_key IN (*)`,
	} {
		if err := s.inList(ctx, tx, q, nil, keys); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) batchDeleteUsers(ctx context.Context, tx *sql.Tx, b *ldapauth.Batch) error {
	if len(b.DeleteUsers) == 0 {
		return nil
	}
	keys := make([]string, len(b.DeleteUsers))
	for i, n := range b.DeleteUsers {
		keys[i] = userKey(n)
	}
	for _, q := range []string{ // as DeleteUser
		`DELETE FROM login_sessions WHERE username_key IN (*)`,
		`DELETE FROM login_known_clients WHERE username_key IN (*)`,
		`DELETE FROM ldap_group_members WHERE username_key IN (*)`,
		`DELETE FROM organisation_members WHERE username_key IN (*)`,
		`DELETE FROM ldap_users WHERE username_key IN (*)`,
	} {
		if err := s.inList(ctx, tx, q, nil, keys); err != nil {
			return err
		}
	}
	return nil
}
