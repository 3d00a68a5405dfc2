package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/internal/pgtest"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// pg is the PostgreSQL server shared by the tests of this binary.
var pg pgtest.Shared

func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }

// result is what one run of the command left.
type result struct {
	code           int
	stdout, stderr string
}

// command runs the command with args in the environment vars, as the
// shell would run `syncgroups args...`.
func command(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	return result{code, stdout.String(), stderr.String()}
}

// demoDirectory starts the demo directory and returns it with the
// environment of a deployment syncing it.
func demoDirectory(t *testing.T) (*ldaptest.Server, map[string]string) {
	t.Helper()
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	return srv, demo.Env(srv)
}

func sqliteDB(t *testing.T) string { return filepath.Join(t.TempDir(), "sync.db") }

// openStore opens the database the command wrote, to look at it.
func openStore(t *testing.T, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.OpenDSN(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func snapshot(t *testing.T, dsn string) *storetest.Contents {
	t.Helper()
	snap, err := storetest.Read(t.Context(), openStore(t, dsn))
	require.NoError(t, err)
	return snap
}

// editUser changes the user name of d.
func editUser(t *testing.T, d *ldaptest.Directory, name string, edit func(*ldaptest.User)) {
	t.Helper()
	for i := range d.Users {
		if d.Users[i].Name == name {
			edit(&d.Users[i])
			return
		}
	}
	t.Fatalf("no user %s", name)
}

func decode(t *testing.T, out string) *ldapauth.SyncReport {
	t.Helper()
	var rep ldapauth.SyncReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), "stdout is one JSON report:\n%s", out)
	return &rep
}

// TestDryRunWritesNothing: a dry run prints the plan and leaves the
// database as it was, empty or not.
func TestDryRunWritesNothing(t *testing.T) {
	srv, vars := demoDirectory(t)
	db := sqliteDB(t)

	r := command(t, vars, "-db", db, "-dry-run", "-create-users")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "dry run, nothing written")
	assert.Contains(t, r.stdout, "users created (5):")
	snap := snapshot(t, db)
	assert.Empty(t, snap.Users, "a dry run creates no user")
	assert.Empty(t, snap.Groups)

	require.Equal(t, exitOK, command(t, vars, "-db", db, "-create-users").code)
	before := snapshot(t, db)
	d := ldaptest.DemoDirectory()
	editUser(t, &d, "carol", func(u *ldaptest.User) { u.Mail = "carol.danvers@example.com" })
	editUser(t, &d, "alice", func(u *ldaptest.User) { u.Groups = []string{"ldapusers", "marvel"} })
	require.NoError(t, srv.SetDirectory(d))

	r = command(t, vars, "-db", db, "-dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "users updated (1):\n  carol\n")
	assert.Contains(t, r.stdout, "alice in cn=readers,ou=groups,dc=example,dc=com")
	assert.Equal(t, before, snapshot(t, db), "the plan is printed, nothing written")
}

// TestRunAppliesDirectoryChange: a change made in the directory reaches the
// database in one run, and the next run has nothing to do.
func TestRunAppliesDirectoryChange(t *testing.T) {
	srv, vars := demoDirectory(t)
	db := sqliteDB(t)
	require.Equal(t, exitOK, command(t, vars, "-db", db, "-create-users").code)

	d := ldaptest.DemoDirectory()
	editUser(t, &d, "carol", func(u *ldaptest.User) { u.Mail = "carol.danvers@example.com" })
	editUser(t, &d, "alice", func(u *ldaptest.User) { u.Groups = []string{"ldapusers", "marvel"} }) // left readers, joined marvel
	editUser(t, &d, "jürgen", func(u *ldaptest.User) { u.Groups = nil })                            // out of the login group
	require.NoError(t, srv.SetDirectory(d))

	r := command(t, vars, "-db", db)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "ldapauth sync (applied)")
	assert.Contains(t, r.stdout, "users removed (1):\n  jürgen\n")

	store := openStore(t, db)
	carol, err := store.User(t.Context(), "carol")
	require.NoError(t, err)
	assert.Equal(t, "carol.danvers@example.com", carol.Fields["email"])
	alice, err := store.User(t.Context(), "alice")
	require.NoError(t, err)
	assert.Equal(t, []ldapauth.Group{{DN: srv.GroupDN("marvel"), Name: "marvel"}}, alice.Groups)
	_, err = store.User(t.Context(), "jürgen")
	assert.ErrorIs(t, err, sqlstore.ErrNoSuchUser)

	r = command(t, vars, "-db", db, "-json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Zero(t, decode(t, r.stdout).Counts.Changes(), "the next run has nothing to do")
}

// TestJSON: with -json, stdout is the report and nothing else; progress
// and notes stay on stderr.
func TestJSON(t *testing.T) {
	_, vars := demoDirectory(t)
	r := command(t, vars, "-db", sqliteDB(t), "-json", "-dry-run", "-create-users")
	require.Equal(t, exitOK, r.code, r.stderr)
	rep := decode(t, r.stdout)
	assert.True(t, rep.DryRun)
	assert.False(t, rep.Applied)
	assert.Equal(t, []string{"alice", "carol", "dave(ops", "jürgen", "mallory"}, rep.UsersCreated)
	assert.Equal(t, 5, rep.Counts.UsersCreated)
	assert.Equal(t, 5, rep.DirectoryUsers)
	assert.Contains(t, r.stderr, "syncgroups: read 5 users (1 page)", "plain progress lines when stderr is no terminal")
}

// TestRemovalGuard: a directory that suddenly returns nobody is refused
// with exit status 3, one line on stderr and the plan on stdout, and
// nothing is removed until -force.
func TestRemovalGuard(t *testing.T) {
	srv, vars := demoDirectory(t)
	db := sqliteDB(t)
	require.Equal(t, exitOK, command(t, vars, "-db", db, "-create-users").code)
	before := snapshot(t, db)
	require.Len(t, before.Users, 5)

	d := ldaptest.DemoDirectory()
	for i := range d.Users {
		d.Users[i].Groups = slices.DeleteFunc(d.Users[i].Groups, func(g string) bool { return g == demo.LoginGroup })
	}
	require.NoError(t, srv.SetDirectory(d)) // the login group emptied by mistake

	r := command(t, vars, "-db", db, "-quiet")
	assert.Equal(t, exitGuard, r.code)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line of reason:\n%s", r.stderr)
	assert.True(t, strings.HasPrefix(r.stderr, "syncgroups: ldapauth: sync refused: too many removals: the directory returned no user"), r.stderr)
	assert.Contains(t, r.stdout, "users removed (5):", "the plan is printed for someone to check")
	assert.Equal(t, before, snapshot(t, db), "nothing written")

	r = command(t, vars, "-db", db, "-quiet", "-json")
	assert.Equal(t, exitGuard, r.code)
	rep := decode(t, r.stdout)
	assert.False(t, rep.Applied)
	assert.Len(t, rep.UsersRemoved, 5)
	assert.Equal(t, ldapauth.RemovalCount{Remove: 5, Total: 5, OverLimit: true}, rep.RemovalGuard.Users, "what the guard weighed, per kind")
	assert.Contains(t, r.stdout, `"removal_guard": {`)
	assert.Contains(t, r.stdout, `"held": {`)

	r = command(t, vars, "-db", db, "-quiet", "-force")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "forced")
	assert.Empty(t, snapshot(t, db).Users)
}

// TestFailures: each kind of failure has its exit status and a reason on
// one line of stderr.
func TestFailures(t *testing.T) {
	srv, good := demoDirectory(t)
	with := func(changes map[string]string) map[string]string {
		vars := demo.Env(srv)
		for k, v := range changes {
			if v == "" {
				delete(vars, k)
			} else {
				vars[k] = v
			}
		}
		return vars
	}
	tests := []struct {
		name   string
		vars   map[string]string
		args   []string
		code   int
		reason string // in the one line of stderr
	}{
		{"unknown flag", good, []string{"-bogus"}, exitUsage, ""},
		{"argument", good, []string{"now"}, exitUsage, `unexpected argument "now"`},
		{"bad variable", with(map[string]string{"LDAP_SYNC_MAX_REMOVAL_PERCENT": "lots"}), nil, exitUsage, "LDAP_SYNC_MAX_REMOVAL_PERCENT"},
		{"sync variables missing", with(map[string]string{"LDAP_SYNC_USER_USERNAME": "", "LDAP_SYNC_USER_PASSWORD": ""}), nil, exitUsage,
			"LDAP_SYNC_USER_USERNAME"},
		{"wrong sync password", with(map[string]string{"LDAP_SYNC_USER_PASSWORD": "wrong"}), nil, exitFailure, "sync aborted, nothing removed: bind"},
		{"directory down", with(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1:1"}), nil, exitFailure, "sync aborted, nothing removed"},
		{"database unusable", good, []string{"-db", t.TempDir()}, exitFailure, "sqlstore"},
		{"URL forgotten: no demo in its place", map[string]string{"LDAP_SYNCED_GROUPS": "cn=a,dc=x"}, nil, exitUsage, "LDAP_AUTH_URL not set, but LDAP_SYNCED_GROUPS is"},
		{"demo never writes into DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://app@127.0.0.1:1/app"}, nil, exitUsage, "unset DATABASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-quiet"}, tt.args...)
			if !slices.Contains(args, "-db") {
				args = append(args, "-db", sqliteDB(t))
			}
			r := command(t, tt.vars, args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Empty(t, r.stdout, "no report")
			if tt.reason != "" {
				assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line:\n%s", r.stderr)
				assert.Contains(t, r.stderr, tt.reason)
				assert.NotContains(t, r.stderr, "wrong", "no secret in the reason")
			}
		})
	}

	r := command(t, good, "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "Exit status: 0 done, 1 failed, 2 bad flags or configuration, 3 refused by the removal guard")
}

// TestDemoMode: with LDAP_AUTH_URL unset the command syncs the embedded demo
// directory, and -create-users fills an empty database.
func TestDemoMode(t *testing.T) {
	db := sqliteDB(t)
	r := command(t, map[string]string{}, "-db", db)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "syncing the embedded demo directory")
	assert.Contains(t, r.stderr, "-create-users creates them all now", "an empty database gets a hint")

	r = command(t, map[string]string{}, "-db", db, "-create-users", "-json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Len(t, decode(t, r.stdout).UsersCreated, 5)
	assert.Len(t, snapshot(t, db).Users, 5)
}

// backend makes an empty database of one kind for the command's -db.
type backend struct {
	name string
	db   func(t *testing.T) string
}

var backends = []backend{
	{"SQLite", sqliteDB},
	{"PostgreSQL", func(t *testing.T) string {
		return pg.NewDatabase(t)
	}},
}

// generatedEnv is the environment of a deployment syncing a directory made
// by ldaptest.Generate: no login group, three synced groups.
func generatedEnv(srv *ldaptest.Server) map[string]string {
	vars := srv.Env()
	vars[ldapauth.EnvSyncRelations] = "flagsmith_ldap.ldap.sync_user_groups"
	vars[ldapauth.EnvOrganisationID] = "1"
	vars[ldapauth.EnvSyncedGroups] = srv.GroupDN("group0000") + ":" + srv.GroupDN("group0001") + ":" + srv.GroupDN("group0002")
	vars[ldapauth.EnvSearchBase] = srv.BaseDN() // every user, whatever their primary group
	vars[ldapauth.EnvSyncUsername] = "svc"
	vars[ldapauth.EnvSyncPassword] = ldaptest.GeneratedPassword("svc")
	vars[ldapauth.EnvSyncPageSize] = "50"
	return vars
}

// bindAnswerSize measures how many bytes the directory sends in answer to
// the sync account's bind in vars, so a proxy can hold back what follows.
func bindAnswerSize(t *testing.T, srv *ldaptest.Server, vars map[string]string) int64 {
	t.Helper()
	p := faultproxy.Start(t, strings.TrimPrefix(srv.URL(), "ldap://"))
	l, err := ldap.DialURL(p.URL())
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.Bind(srv.UserDN(vars[ldapauth.EnvSyncUsername]), vars[ldapauth.EnvSyncPassword]))
	n := p.ServerBytes()
	require.Positive(t, n)
	return n
}

// TestConcurrentRuns: two runs at once over one database (two replicas of
// an overlapping schedule): the second, started while the first is held
// mid-run, exits at once with exitLease and says since when the lease is
// held; the first completes, a third run has nothing to do, and the
// database equals one synced alone.
func TestConcurrentRuns(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			d := ldaptest.Generate(300, 10)
			srv := ldaptest.Start(t, d)
			vars := generatedEnv(srv)
			db := b.db(t)
			require.Equal(t, exitOK, command(t, vars, "-db", db, "-create-users", "-quiet").code)

			// The directory changes: leavers (within the guard's
			// allowance), new mail, other groups, newcomers.
			d.Users = slices.Delete(d.Users, 0, 5)
			for i := 5; i < 15; i++ {
				d.Users[i].Mail = fmt.Sprintf("new-%d@example.com", i)
			}
			for i := 15; i < 40; i++ {
				d.Users[i].Groups = []string{"group0000", "group0002"}
			}
			for i := range 5 {
				name := fmt.Sprintf("new%02d", i)
				d.Users = append(d.Users, ldaptest.User{Name: name, Password: ldaptest.GeneratedPassword(name),
					PrimaryGroup: "group0001", Groups: []string{"group0002"}})
			}
			require.NoError(t, srv.SetDirectory(d))

			// The barrier: the first run reads the directory through a
			// proxy that holds its connection's answers after the bind. A
			// run takes the lease, then reads the database, then the
			// directory, so once it is held it is mid-run, holding the
			// lease. The second run starts then, over the same database.
			p := faultproxy.Start(t, strings.TrimPrefix(srv.URL(), "ldap://"))
			p.StallAfter(bindAnswerSize(t, srv, vars))
			held := maps.Clone(vars)
			held[ldapauth.EnvURL] = p.URL()
			held[ldapauth.EnvReceiveTimeout] = "600" // held until the second run is refused

			var first result
			done := make(chan struct{})
			go func() {
				defer close(done)
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), []string{"-db", db, "-create-users", "-json", "-quiet"}, &stdout, &stderr,
					func(k string) (string, bool) { v, ok := held[k]; return v, ok })
				first = result{code, stdout.String(), stderr.String()}
			}()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			stalled := p.WaitStalled(ctx, 1)
			cancel()
			var second result
			if stalled == nil {
				second = command(t, vars, "-db", db, "-create-users", "-json", "-quiet")
			}
			p.StallAfter(-1)
			<-done
			require.NoError(t, stalled, "the first run reached its directory read")
			require.Equal(t, exitLease, second.code, "the second run is refused: %s", second.stderr)
			assert.Contains(t, second.stderr, "another sync holds the lease since ")
			assert.Empty(t, second.stdout, "no report: the refused run did nothing")
			require.Equal(t, exitOK, first.code, "the first run: %s", first.stderr)
			assert.True(t, decode(t, first.stdout).Applied)

			r := command(t, vars, "-db", db, "-create-users", "-json", "-quiet")
			require.Equal(t, exitOK, r.code, r.stderr)
			third := decode(t, r.stdout)
			assert.Zero(t, third.Counts.Changes(), "a third run has nothing to do: %+v", third.Counts)

			alone := sqliteDB(t)
			require.Equal(t, exitOK, command(t, vars, "-db", alone, "-create-users", "-quiet").code)
			got, want := snapshot(t, db), snapshot(t, alone)
			assert.Equal(t, want.Users, got.Users)
			assert.Equal(t, want.Details, got.Details)
			assert.Equal(t, want.Groups, got.Groups)
			assert.Len(t, got.Users, 301, "300 users, 5 gone, 5 new, and the service account")
		})
	}
}

func TestBar(t *testing.T) {
	tests := []struct {
		done, total, width int
		want               string
	}{
		{0, 10, 60, "writing [>                              ] 0/10 changes   0%"},
		{5, 10, 60, "writing [===============>               ] 5/10 changes  50%"},
		{10, 10, 60, "writing [==============================] 10/10 changes 100%"},
		{0, 0, 60, "writing [================================] 0/0 changes 100%"},
		{5, 10, 30, "writing 5/10 changes  50%"}, // no room for a bar
	}
	for _, tt := range tests {
		got := bar("writing", tt.done, tt.total, tt.width)
		assert.Equal(t, tt.want, got)
		assert.LessOrEqual(t, len(got), tt.width-1, "one column left free: no wrap")
	}
	for width := 1; width < 200; width++ {
		assert.LessOrEqual(t, len(bar("writing", 1234, 5678, width)), max(width-1, len("writing 1234/5678 changes  21%")),
			"width %d: the bar fits the terminal", width)
	}
}
