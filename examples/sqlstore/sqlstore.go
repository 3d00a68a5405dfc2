// Package sqlstore is an ldapauth.UserStore on database/sql: the users,
// their mapped fields, the synced groups, the memberships and the
// organisation join, in SQLite (the pure-Go modernc.org/sqlite driver, no
// cgo) or PostgreSQL (github.com/jackc/pgx/v5).
//
// The login server and the sync job of the examples share it. Open creates
// or upgrades the schema (embedded, versioned in the schema_version table);
// every write runs in one transaction; every method is an idempotent upsert
// or delete; a Store is safe for concurrent use, by goroutines and by
// processes sharing the database.
//
//	store, err := sqlstore.OpenDSN(ctx, "ldapauth.db")                         // SQLite file
//	store, err := sqlstore.OpenDSN(ctx, "postgres://app@127.0.0.1:5432/app")   // PostgreSQL
package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"modernc.org/sqlite"               // the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/go-ldapauth/ldapauth"
)

// Driver names accepted by Open.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "pgx"
)

// Errors returned by the Store, matched with errors.Is.
var (
	// ErrNoSuchUser means the store holds no user by that name: returned by
	// User, and by SetMember and JoinOrganisation for a user never saved.
	ErrNoSuchUser = errors.New("sqlstore: no such user")
	// ErrNoSuchGroup means SetMember was asked to add a member to a group
	// the store does not hold.
	ErrNoSuchGroup = errors.New("sqlstore: no such group")
)

// Store is an [ldapauth.UserStore] in a SQL database. It is safe for
// concurrent use by multiple goroutines.
type Store struct {
	db      *sql.DB
	dialect dialect
	now     func() time.Time
}

var _ ldapauth.UserStore = (*Store)(nil)

// Account is a user as the store holds it, for showing to the user.
type Account struct {
	Username string
	DN       string
	// Fields are the mapped fields of the last login.
	Fields map[string]string
	// Organisations are the organisation IDs joined, sorted.
	Organisations []string
	// Groups are the synced groups the user is a member of, by name.
	Groups []ldapauth.Group
	// Created is the first login, Updated the last one.
	Created, Updated time.Time
}

// OpenDSN opens a PostgreSQL database for a postgres:// or postgresql://
// URL, and a SQLite database file otherwise (a path or a file: URI).
func OpenDSN(ctx context.Context, dsn string) (*Store, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return Open(ctx, DriverPostgres, dsn)
	}
	return Open(ctx, DriverSQLite, dsn)
}

// Open opens the database with the driver ([DriverSQLite] or
// [DriverPostgres]) and creates or upgrades its schema. For SQLite, dsn is a
// file path or file: URI; Open adds the settings the store relies on
// (foreign keys, a busy timeout, write transactions that lock at BEGIN) and
// switches a database file to WAL unless dsn sets a journal mode.
func Open(ctx context.Context, driver, dsn string) (*Store, error) {
	return open(ctx, driver, dsn, 0)
}

// open is Open, which migrates the schema up to version (every migration
// for 0).
func open(ctx context.Context, driver, dsn string, version int) (*Store, error) {
	var d dialect
	wal := false
	switch driver {
	case DriverSQLite:
		d = sqliteDialect
		var err error
		if dsn, wal, err = sqliteDSN(dsn); err != nil {
			return nil, err
		}
	case DriverPostgres:
		d = postgresDialect
	default:
		return nil, fmt.Errorf("sqlstore: unknown driver %q (want %q or %q)", driver, DriverSQLite, DriverPostgres)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if driver == DriverSQLite && strings.Contains(dsn, ":memory:") {
		db.SetMaxOpenConns(1) // each connection would get its own empty database
	}
	s := &Store{db: db, dialect: d, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
	if wal {
		if err := useWAL(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := s.migrate(ctx, version); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// sqliteDSN turns a path or file: URI into a URI with the store's settings,
// keeping any the caller gave.
// It also reports whether Open must switch the database to WAL (a file,
// and no journal mode of the caller's).
func sqliteDSN(dsn string) (_ string, wal bool, _ error) {
	if dsn == "" {
		return "", false, errors.New("sqlstore: empty SQLite file name")
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", false, fmt.Errorf("sqlstore: SQLite DSN %q: %w", dsn, err)
	}
	for k, v := range map[string]string{
		"_foreign_keys": "1",
		"_busy_timeout": strconv.Itoa(int(busyTimeout / time.Millisecond)),
		"_txlock":       "immediate", // a writer locks at BEGIN: no deadlock upgrading a read lock
		"_synchronous":  "NORMAL",
	} {
		if !q.Has(k) {
			q.Set(k, v)
		}
	}
	// The journal mode is not set per connection: see useWAL.
	wal = path != ":memory:" && !q.Has("_journal_mode") && !q.Has("_journal")
	return "file:" + path + "?" + q.Encode(), wal, nil
}

// busyTimeout is how long a SQLite connection waits for another's lock.
const busyTimeout = 10 * time.Second

// useWAL switches the SQLite database to write-ahead logging, once: the mode
// is stored in the file, so every later connection of every process uses
// it.
//
// It cannot be left to each connection's DSN (_journal_mode=WAL), as it was:
// switching a new file into WAL needs an exclusive lock, and SQLite takes it
// without calling the busy handler, so a connection opened while another
// held any lock failed at once with SQLITE_BUSY ("database is locked"),
// whatever the busy timeout. Two programs creating the same new database
// (the login server and the sync job) failed about once in seven. Here the
// switch is retried for as long as the busy timeout would have waited.
func useWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	wait := time.Millisecond
	for {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		if err == nil {
			return nil
		}
		var serr *sqlite.Error
		if !errors.As(err, &serr) || serr.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return fmt.Errorf("sqlstore: set journal_mode=WAL: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqlstore: set journal_mode=WAL: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// SetClock replaces the store's clock (time.Now), for tests of what expires.
// Call it before the store is used.
func (s *Store) SetClock(now func() time.Time) {
	s.now = func() time.Time { return now().UTC().Truncate(time.Microsecond) }
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB returns the database, for queries of the caller's own.
func (s *Store) DB() *sql.DB { return s.db }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	return nil
}

// userKey is the case-insensitive key of usernames (ldapauth.DNKey is that
// of group DNs).
func userKey(name string) string { return strings.ToLower(name) }

// inTx runs fn in a transaction, committed when fn returns nil.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		if errors.Is(err, ErrNoSuchUser) || errors.Is(err, ErrNoSuchGroup) || errors.Is(err, ErrLeaseHeld) {
			return err
		}
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: %s: commit: %w", op, err)
	}
	return nil
}

func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, s.dialect.rebind(query), args...)
}

// SaveUser implements [ldapauth.UserStore]: it creates or updates the user
// with its mapped fields.
func (s *Store) SaveUser(ctx context.Context, u *ldapauth.User) error {
	key, now := userKey(u.Username), s.now()
	fields, err := encodeFields(u.Fields)
	if err != nil {
		return err
	}
	return s.inTx(ctx, "save user", func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO ldap_users (username_key, username, dn, fields, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (username_key) DO UPDATE SET username = excluded.username, dn = excluded.dn, fields = excluded.fields, updated_at = excluded.updated_at`,
			key, u.Username, u.DN, fields, now, now)
		return err
	})
}

// encodeFields is the fields column of a user's mapped fields: a JSON
// object, its keys sorted.
func encodeFields(fields map[string]string) (string, error) {
	if len(fields) == 0 {
		return "{}", nil
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return "", fmt.Errorf("sqlstore: encode mapped fields: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// decodeFields reads the fields column of a user.
func decodeFields(username, column string) (map[string]string, error) {
	fields := map[string]string{}
	if err := json.Unmarshal([]byte(column), &fields); err != nil {
		return nil, fmt.Errorf("sqlstore: mapped fields of %q: %w", username, err)
	}
	return fields, nil
}

// DeleteUser implements [ldapauth.UserStore]: it removes the user with its
// memberships, organisation joins and sessions: a user the sync
// job removes is signed out everywhere.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	key := userKey(username)
	return s.inTx(ctx, "delete user", func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM login_sessions WHERE username_key = ?`,
			`DELETE FROM login_known_clients WHERE username_key = ?`,
			`DELETE FROM ldap_group_members WHERE username_key = ?`,
			`DELETE FROM organisation_members WHERE username_key = ?`,
			`DELETE FROM ldap_users WHERE username_key = ?`,
		} {
			if _, err := s.exec(ctx, tx, q, key); err != nil {
				return err
			}
		}
		return nil
	})
}

// userExists reports whether the store holds the user, inside tx.
func (s *Store) userExists(ctx context.Context, tx *sql.Tx, key string) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT 1 FROM ldap_users WHERE username_key = ?`), key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// JoinOrganisation implements [ldapauth.UserStore]. Joining twice changes
// nothing. The user must have been saved ([ErrNoSuchUser]).
func (s *Store) JoinOrganisation(ctx context.Context, username, organisationID string) error {
	key := userKey(username)
	return s.inTx(ctx, "join organisation", func(tx *sql.Tx) error {
		ok, err := s.userExists(ctx, tx, key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoSuchUser, username)
		}
		_, err = s.exec(ctx, tx, `INSERT INTO organisation_members (organisation_id, username_key, joined_at)
			VALUES (?, ?, ?) ON CONFLICT (organisation_id, username_key) DO NOTHING`, organisationID, key, s.now())
		return err
	})
}

// SaveGroup implements [ldapauth.UserStore]: it creates the group or
// updates its DN spelling and name.
func (s *Store) SaveGroup(ctx context.Context, g ldapauth.Group) error {
	now := s.now()
	return s.inTx(ctx, "save group", func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO ldap_groups (dn_key, dn, name, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (dn_key) DO UPDATE SET dn = excluded.dn, name = excluded.name, updated_at = excluded.updated_at`,
			ldapauth.DNKey(g.DN), g.DN, g.Name, now, now)
		return err
	})
}

// DeleteGroup implements [ldapauth.UserStore]: it removes the group with
// its memberships.
func (s *Store) DeleteGroup(ctx context.Context, dn string) error {
	key := ldapauth.DNKey(dn)
	return s.inTx(ctx, "delete group", func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM ldap_group_members WHERE dn_key = ?`, key); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `DELETE FROM ldap_groups WHERE dn_key = ?`, key)
		return err
	})
}

// SetMember implements [ldapauth.UserStore]. Adding to a group the store
// does not hold is [ErrNoSuchGroup]; adding a user never saved is
// [ErrNoSuchUser]. Removing never fails for a missing group or user.
func (s *Store) SetMember(ctx context.Context, groupDN, username string, member bool) error {
	gkey, ukey := ldapauth.DNKey(groupDN), userKey(username)
	if !member {
		return s.inTx(ctx, "remove member", func(tx *sql.Tx) error {
			_, err := s.exec(ctx, tx, `DELETE FROM ldap_group_members WHERE dn_key = ? AND username_key = ?`, gkey, ukey)
			return err
		})
	}
	return s.inTx(ctx, "add member", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT 1 FROM ldap_groups WHERE dn_key = ?`), gkey).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNoSuchGroup, groupDN)
		}
		if err != nil {
			return err
		}
		ok, err := s.userExists(ctx, tx, ukey)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoSuchUser, username)
		}
		_, err = s.exec(ctx, tx, `INSERT INTO ldap_group_members (dn_key, username_key, username)
			VALUES (?, ?, ?) ON CONFLICT (dn_key, username_key) DO NOTHING`, gkey, ukey, username)
		return err
	})
}

// Users implements [ldapauth.UserStore]: one query, whose rows (a user's
// row, its organisations' after it) are read through a cursor and merged
// user by user, so that memory holds one user at a time, whatever the
// number of users.
func (s *Store) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		s.streamUsers(ctx, nil, yield)
	}
}

// streamUsers reads the users (those of keys, the user keys, or every
// user for nil) in one query: their rows (with their mapped fields) and
// their organisations' merged in username_key order (each table is read in
// the order of an index: no sort, no per-row subquery), and yields each
// user once its rows are read. It reports whether the caller should go on.
func (s *Store) streamUsers(ctx context.Context, keys []string, yield func(ldapauth.StoredUser, error) bool) bool {
	cond := ""
	var args []any
	if keys != nil {
		cond = " WHERE username_key IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ") + ")"
		for range 2 {
			args = append(args, anys(keys)...)
		}
	}
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(`SELECT username_key, 0, username, dn, fields FROM ldap_users`+cond+`
		UNION ALL SELECT username_key, 1, organisation_id, '', '' FROM organisation_members`+cond+`
		ORDER BY 1, 2`), args...)
	if err != nil {
		yield(ldapauth.StoredUser{}, fmt.Errorf("sqlstore: users: %w", err))
		return false
	}
	defer rows.Close()
	var cur ldapauth.StoredUser
	curKey, have := "", false
	for rows.Next() {
		var key, a, b, fields string
		var kind int
		if err := rows.Scan(&key, &kind, &a, &b, &fields); err != nil {
			yield(ldapauth.StoredUser{}, fmt.Errorf("sqlstore: users: %w", err))
			return false
		}
		switch {
		case kind == 0:
			if have {
				slices.Sort(cur.Organisations)
				if !yield(cur, nil) {
					return false
				}
			}
			f, err := decodeFields(a, fields)
			if err != nil {
				yield(ldapauth.StoredUser{}, err)
				return false
			}
			cur, curKey, have = ldapauth.StoredUser{Username: a, DN: b, Fields: f}, key, true
		case !have || key != curKey:
			// An organisation row of a user the store does not hold: the
			// foreign key makes it impossible; skip it.
		default:
			cur.Organisations = append(cur.Organisations, a)
		}
	}
	if err := rows.Err(); err != nil {
		yield(ldapauth.StoredUser{}, fmt.Errorf("sqlstore: users: %w", err))
		return false
	}
	if have {
		slices.Sort(cur.Organisations)
		return yield(cur, nil)
	}
	return true
}

// Groups implements [ldapauth.UserStore]: the groups with their members,
// read through a cursor group by group.
func (s *Store) Groups(ctx context.Context) iter.Seq2[ldapauth.GroupMembers, error] {
	return func(yield func(ldapauth.GroupMembers, error) bool) {
		rows, err := s.db.QueryContext(ctx, `SELECT g.dn_key, g.dn, g.name, m.username
			FROM ldap_groups g LEFT JOIN ldap_group_members m ON m.dn_key = g.dn_key
			ORDER BY g.dn_key, m.username_key`)
		if err != nil {
			yield(ldapauth.GroupMembers{}, fmt.Errorf("sqlstore: groups: %w", err))
			return
		}
		defer rows.Close()
		var cur ldapauth.GroupMembers
		curKey, have := "", false
		for rows.Next() {
			var key, dn, name string
			var member sql.NullString
			if err := rows.Scan(&key, &dn, &name, &member); err != nil {
				yield(ldapauth.GroupMembers{}, fmt.Errorf("sqlstore: groups: %w", err))
				return
			}
			if !have || key != curKey {
				if have && !yield(cur, nil) {
					return
				}
				cur = ldapauth.GroupMembers{Group: ldapauth.Group{DN: dn, Name: name}}
				curKey, have = key, true
			}
			if member.Valid {
				cur.Members = append(cur.Members, member.String)
			}
		}
		if err := rows.Err(); err != nil {
			yield(ldapauth.GroupMembers{}, fmt.Errorf("sqlstore: groups: %w", err))
			return
		}
		if have {
			yield(cur, nil)
		}
	}
}

// User returns the stored user, or an error matching [ErrNoSuchUser].
func (s *Store) User(ctx context.Context, username string) (*Account, error) {
	key := userKey(username)
	a := &Account{Fields: map[string]string{}}
	err := s.inTx(ctx, "read user", func(tx *sql.Tx) error {
		var fields string
		err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT username, dn, fields, created_at, updated_at FROM ldap_users WHERE username_key = ?`), key).
			Scan(&a.Username, &a.DN, &fields, &a.Created, &a.Updated)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNoSuchUser, username)
		}
		if err != nil {
			return err
		}
		if a.Fields, err = decodeFields(a.Username, fields); err != nil {
			return err
		}
		if a.Organisations, err = queryStrings(ctx, tx, s.dialect.rebind(
			`SELECT organisation_id FROM organisation_members WHERE username_key = ? ORDER BY organisation_id`), key); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.dialect.rebind(`SELECT g.dn, g.name FROM ldap_groups g
			JOIN ldap_group_members m ON m.dn_key = g.dn_key WHERE m.username_key = ?`), key)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g ldapauth.Group
			if err := rows.Scan(&g.DN, &g.Name); err != nil {
				return err
			}
			a.Groups = append(a.Groups, g)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(a.Groups, func(x, y ldapauth.Group) int {
		return cmp.Or(strings.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name)), strings.Compare(x.DN, y.DN))
	})
	return a, nil
}

// UserFields returns the mapped fields of the user, and false when the
// store holds no such user (storetest.Reader).
func (s *Store) UserFields(ctx context.Context, username string) (map[string]string, bool, error) {
	a, err := s.User(ctx, username)
	if errors.Is(err, ErrNoSuchUser) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return a.Fields, true, nil
}

// Organisations returns the organisation IDs the user joined, sorted
// (storetest.Reader). A user the store does not hold has none.
func (s *Store) Organisations(ctx context.Context, username string) ([]string, error) {
	a, err := s.User(ctx, username)
	if errors.Is(err, ErrNoSuchUser) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return a.Organisations, nil
}

func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Redact returns dsn with every secret replaced by "xxxxx", for logs: the
// URL's password and any query parameter whose name ends in "password"
// (password, sslpassword, ...). A key=value DSN that mentions a password is
// not shown at all.
func Redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.Scheme != "file" {
		q := u.Query()
		changed := false
		for k := range q {
			if strings.HasSuffix(strings.ToLower(k), "password") {
				q.Set(k, "xxxxx")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	if strings.Contains(strings.ToLower(dsn), "password") { // a key=value DSN: keep nothing that may be secret
		return "(a DSN with a password)"
	}
	return dsn
}
