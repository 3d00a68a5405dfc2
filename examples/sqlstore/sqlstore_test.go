package sqlstore_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/pgtest"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// pg is the PostgreSQL server shared by the tests of this binary.
var pg pgtest.Shared

func TestMain(m *testing.M) {
	if dsn := os.Getenv(leaseHolderEnv); dsn != "" { // re-executed as another process holding the lease
		os.Exit(holdLease(dsn))
	}
	os.Exit(pg.Main(m))
}

// backend makes empty databases of one kind.
type backend struct {
	name  string
	newDB func(t *testing.T) (driver, dsn string)
}

func (b backend) open(t *testing.T) *sqlstore.Store {
	t.Helper()
	driver, dsn := b.newDB(t)
	return open(t, driver, dsn)
}

var backends = []backend{
	{"SQLite", func(t *testing.T) (string, string) {
		return sqlstore.DriverSQLite, filepath.Join(t.TempDir(), "test.db")
	}},
	{"PostgreSQL", func(t *testing.T) (string, string) {
		return sqlstore.DriverPostgres, pg.NewDatabase(t)
	}},
}

func open(t *testing.T, driver, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(t.Context(), driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the UserStore contract suite on SQLite and PostgreSQL.
func TestContract(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) ldapauth.UserStore {
				return b.open(t)
			})
		})
	}
}

func TestSchema(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			driver, dsn := b.newDB(t)
			s := open(t, driver, dsn)
			require.NoError(t, s.SaveUser(t.Context(), &ldapauth.User{Username: "alice", DN: "uid=alice,dc=example,dc=com"}))

			var version int
			require.NoError(t, s.DB().QueryRowContext(t.Context(), `SELECT MAX(version) FROM schema_version`).Scan(&version))
			assert.Equal(t, sqlstore.SchemaVersion(), version)
			require.NoError(t, s.Close())

			again := open(t, driver, dsn) // the schema is there: nothing is applied twice, nothing lost
			snap, err := storetest.Read(t.Context(), again)
			require.NoError(t, err)
			assert.Equal(t, []string{"alice"}, snap.Users)
			var rows int
			require.NoError(t, again.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_version`).Scan(&rows))
			assert.Equal(t, sqlstore.SchemaVersion(), rows)

			_, err = again.DB().ExecContext(t.Context(), `INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', CURRENT_TIMESTAMP)`)
			require.NoError(t, err)
			_, err = sqlstore.Open(t.Context(), driver, dsn)
			assert.ErrorContains(t, err, "newer than this program's", "a database from a newer program is not used")
		})
	}
}

// TestOpenConcurrently opens one new database from several stores at once,
// as a login server and a sync job starting together do: the schema is
// created once and every store works.
func TestOpenConcurrently(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			driver, dsn := b.newDB(t)
			const n = 4
			stores := make([]*sqlstore.Store, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					stores[i], errs[i] = sqlstore.Open(context.Background(), driver, dsn)
				})
			}
			wg.Wait()
			for i := range n {
				require.NoError(t, errs[i])
				t.Cleanup(func() { stores[i].Close() })
				require.NoError(t, stores[i].SaveGroup(t.Context(), ldapauth.Group{DN: storetest.ReadersDN, Name: "readers"}))
			}
			snap, err := storetest.Read(t.Context(), stores[0])
			require.NoError(t, err)
			assert.Len(t, snap.Groups, 1)
		})
	}
}

// TestOpenConcurrentlyStress opens a new SQLite file from many goroutines
// at once, round after round: the way a login server and a sync job started
// together meet. Every open must succeed (switching a new file to WAL used
// to fail with SQLITE_BUSY whatever the busy timeout). A few seconds (fewer
// rounds under the race detector), so -short leaves it out.
func TestOpenConcurrentlyStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test: a few seconds; run without -short")
	}
	const opens = 24
	rounds := 50 // before the fix, 3 runs in 4 failed
	if raceEnabled {
		rounds = 10
	}
	for round := range rounds {
		dsn := filepath.Join(t.TempDir(), fmt.Sprintf("stress%d.db", round))
		errs := make([]error, opens)
		var wg sync.WaitGroup
		start := make(chan struct{}) // every open starts at once
		for i := range opens {
			wg.Go(func() {
				<-start
				s, err := sqlstore.Open(context.Background(), sqlstore.DriverSQLite, dsn)
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "round %d, open %d", round, i)
		}
	}
}

func TestUser(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			s := b.open(t)
			_, err := s.User(ctx, "alice")
			require.ErrorIs(t, err, sqlstore.ErrNoSuchUser)

			u := &ldapauth.User{Username: "alice", DN: "uid=alice,ou=people,dc=example,dc=com",
				Fields: map[string]string{"username": "alice", "first_name": "Alice", "email": "alice@example.com"}}
			require.NoError(t, s.SaveUser(ctx, u))
			require.NoError(t, s.JoinOrganisation(ctx, "alice", "1"))
			for dn, name := range map[string]string{storetest.ReadersDN: "readers", storetest.MarvelDN: "marvel"} {
				require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: dn, Name: name}))
			}
			require.NoError(t, s.SetMember(ctx, storetest.ReadersDN, "alice", true))

			a, err := s.User(ctx, "ALICE")
			require.NoError(t, err)
			assert.Equal(t, "alice", a.Username)
			assert.Equal(t, u.DN, a.DN)
			assert.Equal(t, u.Fields, a.Fields)
			assert.Equal(t, []string{"1"}, a.Organisations)
			assert.Equal(t, []ldapauth.Group{{DN: storetest.ReadersDN, Name: "readers"}}, a.Groups)
			assert.False(t, a.Created.IsZero())
			assert.False(t, a.Updated.Before(a.Created))

			var password string
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT password FROM ldap_users`).Scan(&password))
			assert.Equal(t, "!", password, "a directory user has no usable local password")
		})
	}
}

func TestErrors(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			s := b.open(t)
			require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: storetest.ReadersDN, Name: "readers"}))
			assert.ErrorIs(t, s.SetMember(ctx, storetest.MarvelDN, "alice", true), sqlstore.ErrNoSuchGroup)
			assert.ErrorIs(t, s.SetMember(ctx, storetest.ReadersDN, "nobody", true), sqlstore.ErrNoSuchUser,
				"a membership needs a saved user")
			assert.ErrorIs(t, s.JoinOrganisation(ctx, "nobody", "1"), sqlstore.ErrNoSuchUser)

			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			assert.ErrorIs(t, s.SaveUser(cancelled, &ldapauth.User{Username: "alice"}), context.Canceled)
		})
	}
}

func TestOpenBadDriver(t *testing.T) {
	_, err := sqlstore.Open(t.Context(), "mysql", "x")
	assert.ErrorContains(t, err, "unknown driver")
	_, err = sqlstore.Open(t.Context(), sqlstore.DriverSQLite, "")
	assert.Error(t, err)
}

func TestMemorySQLite(t *testing.T) {
	s := open(t, sqlstore.DriverSQLite, ":memory:")
	require.NoError(t, s.SaveUser(t.Context(), &ldapauth.User{Username: "alice"}))
	snap, err := storetest.Read(t.Context(), s)
	require.NoError(t, err)
	assert.Equal(t, []string{"alice"}, snap.Users)
}

// counting is a store that counts the writes made through it.
type counting struct {
	*sqlstore.Store
	mu     sync.Mutex
	writes []string
}

func (c *counting) wrote(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, op)
}

func (c *counting) SaveUser(ctx context.Context, u *ldapauth.User) error {
	c.wrote("save user " + u.Username)
	return c.Store.SaveUser(ctx, u)
}

func (c *counting) DeleteUser(ctx context.Context, username string) error {
	c.wrote("delete user " + username)
	return c.Store.DeleteUser(ctx, username)
}

func (c *counting) JoinOrganisation(ctx context.Context, username, org string) error {
	c.wrote("join " + username)
	return c.Store.JoinOrganisation(ctx, username, org)
}

func (c *counting) SaveGroup(ctx context.Context, g ldapauth.Group) error {
	c.wrote("save group " + g.DN)
	return c.Store.SaveGroup(ctx, g)
}

func (c *counting) DeleteGroup(ctx context.Context, dn string) error {
	c.wrote("delete group " + dn)
	return c.Store.DeleteGroup(ctx, dn)
}

func (c *counting) SetMember(ctx context.Context, groupDN, username string, member bool) error {
	c.wrote("set member " + username)
	return c.Store.SetMember(ctx, groupDN, username, member)
}

// ApplyBatch records each change of the batch as the method calls would.
func (c *counting) ApplyBatch(ctx context.Context, b *ldapauth.Batch) error {
	for _, g := range b.SaveGroups {
		c.wrote("save group " + g.DN)
	}
	for _, u := range b.SaveUsers {
		c.wrote("save user " + u.Username)
	}
	for _, j := range b.Joins {
		c.wrote("join " + j.Username)
	}
	for _, m := range append(slices.Clone(b.AddMembers), b.RemoveMembers...) {
		c.wrote("set member " + m.Username)
	}
	for _, dn := range b.DeleteGroups {
		c.wrote("delete group " + dn)
	}
	for _, name := range b.DeleteUsers {
		c.wrote("delete user " + name)
	}
	return c.Store.ApplyBatch(ctx, b)
}

func (c *counting) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

// TestSyncTwice runs the sync job twice over the SQL store: the first run
// creates the demo users, the second finds nothing to do and writes
// nothing, because Users tells the sync what is already there.
// A change in the directory is then the only write of the next run.
func TestSyncTwice(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			srv := ldaptest.Start(t, ldaptest.DemoDirectory())
			cfg, err := demo.Config(srv)
			require.NoError(t, err)
			store := &counting{Store: b.open(t)}
			cfg.Store = store
			a, err := ldapauth.New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { a.Close() })

			first, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)
			require.NotEmpty(t, first.UsersCreated)
			require.NotEmpty(t, store.take())
			snap, err := storetest.Read(ctx, store)
			require.NoError(t, err)
			require.Len(t, snap.Details, len(first.UsersCreated), "the SQL store streams every user it saved, with its details")

			second, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)
			assert.Zero(t, second.Changes(), "nothing to do:\n%s", second)
			assert.Empty(t, second.UsersUpdated)
			assert.Empty(t, store.take(), "nothing written")

			d := ldaptest.DemoDirectory()
			for i := range d.Users {
				if d.Users[i].Name == "carol" {
					d.Users[i].Mail = "carol.danvers@example.com"
				}
			}
			require.NoError(t, srv.SetDirectory(d))
			third, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)
			assert.Equal(t, []string{"carol"}, third.UsersUpdated)
			assert.Equal(t, 1, third.Changes(), "%s", third)
			assert.Equal(t, []string{"save user carol"}, store.take())
			acct, err := store.User(ctx, "carol")
			require.NoError(t, err)
			assert.Equal(t, "carol.danvers@example.com", acct.Fields["email"])
		})
	}
}

// barrier is a store (its own connections, as another process's) whose
// first write waits until every run sharing the barrier has taken its
// snapshot: the runs then plan the same changes and write them at once.
type barrier struct {
	*counting
	arrived *sync.WaitGroup
	all     <-chan struct{}
	ctx     context.Context
	snap    sync.Once
	// reread and allReread hold removals until both syncs have read the
	// store's users a second time, as a sync does after its read when the
	// directory misses a stored user, to name it and confirm its removal.
	reread    *sync.WaitGroup
	allReread <-chan struct{}
	reads     atomic.Int32
	rereadOne sync.Once
}

// Users marks the second read of the users, the last a sync makes before
// it plans its removals.
func (b *barrier) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		if b.reads.Add(1) == 2 {
			defer b.rereadOne.Do(b.reread.Done)
		}
		for u, err := range b.counting.Users(ctx) {
			if !yield(u, err) {
				return
			}
		}
	}
}

// Groups is the last read of the store a sync makes before it plans.
func (b *barrier) Groups(ctx context.Context) iter.Seq2[ldapauth.GroupMembers, error] {
	return func(yield func(ldapauth.GroupMembers, error) bool) {
		defer b.snap.Do(b.arrived.Done)
		for g, err := range b.counting.Groups(ctx) {
			if !yield(g, err) {
				return
			}
		}
	}
}

func (b *barrier) wait() {
	select {
	case <-b.all:
	case <-b.ctx.Done():
	}
}

func (b *barrier) SaveUser(ctx context.Context, u *ldapauth.User) error {
	b.wait()
	return b.counting.SaveUser(ctx, u)
}

func (b *barrier) DeleteUser(ctx context.Context, username string) error {
	b.wait()
	return b.counting.DeleteUser(ctx, username)
}

func (b *barrier) JoinOrganisation(ctx context.Context, username, org string) error {
	b.wait()
	return b.counting.JoinOrganisation(ctx, username, org)
}

func (b *barrier) SaveGroup(ctx context.Context, g ldapauth.Group) error {
	b.wait()
	return b.counting.SaveGroup(ctx, g)
}

func (b *barrier) DeleteGroup(ctx context.Context, dn string) error {
	b.wait()
	return b.counting.DeleteGroup(ctx, dn)
}

func (b *barrier) ApplyBatch(ctx context.Context, batch *ldapauth.Batch) error {
	b.wait()
	if len(batch.DeleteUsers)+len(batch.RemoveMembers)+len(batch.DeleteGroups) > 0 {
		select {
		case <-b.allReread:
		case <-b.ctx.Done():
		}
	}
	return b.counting.ApplyBatch(ctx, batch)
}

func (b *barrier) SetMember(ctx context.Context, groupDN, username string, member bool) error {
	b.wait()
	return b.counting.SetMember(ctx, groupDN, username, member)
}

// TestConcurrentSyncs runs two syncs at once over one database, each with
// its own connections as two processes would, held so that both read the
// store before either writes, and both read it again (to name the user the
// directory dropped) before either removes anything: both write the same
// changes, interleaved. Both
// succeed, a third run has nothing to do, and the database is as one run
// leaves it.
func TestConcurrentSyncs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			srv := ldaptest.Start(t, ldaptest.DemoDirectory())
			driver, dsn := b.newDB(t)
			syncer := func(store ldapauth.UserStore) *ldapauth.Authenticator {
				cfg, err := demo.Config(srv)
				require.NoError(t, err)
				cfg.Store = store
				a, err := ldapauth.New(cfg)
				require.NoError(t, err)
				t.Cleanup(func() { a.Close() })
				return a
			}
			_, err := syncer(open(t, driver, dsn)).Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)

			d := ldaptest.DemoDirectory()
			for i := range d.Users {
				switch d.Users[i].Name {
				case "carol":
					d.Users[i].Mail = "carol.danvers@example.com"
				case "alice":
					d.Users[i].Groups = []string{"ldapusers", "marvel"}
				case "jürgen":
					d.Users[i].Groups = nil // out of the login group
				case "bob":
					d.Users[i].Groups = append(d.Users[i].Groups, "ldapusers") // new to the login group
				}
			}
			require.NoError(t, srv.SetDirectory(d))

			var arrived sync.WaitGroup
			arrived.Add(2)
			all := make(chan struct{})
			go func() { arrived.Wait(); close(all) }()
			var reread sync.WaitGroup
			reread.Add(2)
			allReread := make(chan struct{})
			go func() { reread.Wait(); close(allReread) }()
			reports := make([]*ldapauth.SyncReport, 2)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range 2 {
				store := &barrier{counting: &counting{Store: open(t, driver, dsn)}, arrived: &arrived, all: all, ctx: ctx,
					reread: &reread, allReread: allReread}
				a := syncer(store)
				wg.Go(func() { reports[i], errs[i] = a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true}) })
			}
			wg.Wait()
			for i := range 2 {
				require.NoError(t, errs[i], "run %d", i)
				assert.True(t, reports[i].Applied)
			}
			assert.Equal(t, reports[0].Changes(), reports[1].Changes(), "both planned the same changes")
			assert.Equal(t, []string{"jürgen"}, reports[0].UsersRemoved)
			assert.Equal(t, []string{"bob"}, reports[0].UsersCreated)

			store := open(t, driver, dsn)
			third, err := syncer(store).Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)
			assert.Zero(t, third.Changes(), "a third run has nothing to do:\n%s", third)

			snap, err := storetest.Read(ctx, store)
			require.NoError(t, err)
			assert.Equal(t, []string{"alice", "bob", "carol", "dave(ops", "mallory"}, snap.Users)
			assert.Equal(t, "carol.danvers@example.com", snap.Details["carol"].Fields["email"])
			for _, name := range snap.Users {
				assert.Equal(t, []string{demo.OrganisationID}, snap.Details[name].Organisations, name)
			}
			groups := map[string][]string{}
			for _, g := range snap.Groups {
				groups[g.Name] = g.Members
			}
			assert.Equal(t, map[string][]string{"marvel": {"alice", "bob", "carol"}, "readers": {"bob"}}, groups)
		})
	}
}

// TestMigrateFieldsColumn opens a database of schema version 5, whose
// mapped fields are rows of ldap_user_fields, with the current program:
// version 6 moves them into the users' rows, and every user reads back
// with the fields it had.
func TestMigrateFieldsColumn(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			driver, dsn := b.newDB(t)
			old, err := sqlstore.OpenVersion(ctx, driver, dsn, 5)
			require.NoError(t, err)
			exec := func(query string, args ...any) {
				t.Helper()
				if driver == sqlstore.DriverPostgres {
					for i := 1; strings.Contains(query, "?"); i++ {
						query = strings.Replace(query, "?", fmt.Sprintf("$%d", i), 1)
					}
				}
				_, err := old.DB().ExecContext(ctx, query, args...)
				require.NoError(t, err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			for _, u := range [][]string{{"alice", "Alice"}, {"bob", "bob"}, {"carol", "Carol"}} {
				exec(`INSERT INTO ldap_users (username_key, username, dn, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
					u[0], u[1], "uid="+u[0]+",dc=example,dc=com", now, now)
			}
			aliceFields := map[string]string{"first_name": "Alice", "last_name": "O'Hara \"Al\" <&> ü", "email": "alice@example.com"}
			for k, v := range aliceFields {
				exec(`INSERT INTO ldap_user_fields (username_key, field, value) VALUES (?, ?, ?)`, "alice", k, v)
			}
			exec(`INSERT INTO ldap_user_fields (username_key, field, value) VALUES (?, ?, ?)`, "carol", "email", "")
			exec(`INSERT INTO organisation_members (organisation_id, username_key, joined_at) VALUES (?, ?, ?)`, "1", "alice", now)
			require.NoError(t, old.Close())

			s := open(t, driver, dsn)
			var version int
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&version))
			assert.Equal(t, sqlstore.SchemaVersion(), version)
			alice, err := s.User(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, aliceFields, alice.Fields)
			assert.Equal(t, []string{"1"}, alice.Organisations)
			assert.True(t, alice.Created.Equal(now), "created %v, want %v", alice.Created, now)
			bob, err := s.User(ctx, "bob")
			require.NoError(t, err)
			assert.Empty(t, bob.Fields)
			carol, err := s.User(ctx, "carol")
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"email": ""}, carol.Fields, "an empty value is kept")

			var streamed []ldapauth.StoredUser
			for u, err := range s.Users(ctx) {
				require.NoError(t, err)
				streamed = append(streamed, u)
			}
			require.Len(t, streamed, 3)
			assert.Equal(t, ldapauth.StoredUser{Username: "Alice", DN: "uid=alice,dc=example,dc=com", Fields: aliceFields, Organisations: []string{"1"}}, streamed[0])
			assert.Empty(t, streamed[1].Fields)

			_, err = s.DB().ExecContext(ctx, `SELECT 1 FROM ldap_user_fields`)
			assert.Error(t, err, "the old table is gone")
			require.NoError(t, s.SaveUser(ctx, &ldapauth.User{Username: "bob", DN: "uid=bob,dc=example,dc=com", Fields: map[string]string{"email": "bob@example.com"}}))
			bob, err = s.User(ctx, "bob")
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"email": "bob@example.com"}, bob.Fields)
		})
	}
}
