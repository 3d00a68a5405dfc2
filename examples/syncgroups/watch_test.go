package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// slapdEnv is the environment of a deployment syncing srv (readers
// synced).
func slapdEnv(srv *slapdtest.Server) map[string]string {
	return map[string]string{
		"LDAP_AUTH_URL":                          srv.URL,
		"LDAP_AUTH_SEARCH_BASE":                  slapdtest.PeopleDN,
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     slapdtest.GroupDN("readers"),
		"LDAP_SYNC_USER_USERNAME":                slapdtest.ServiceDN,
		"LDAP_SYNC_USER_PASSWORD":                slapdtest.ServicePassword,
	}
}

func TestChangesFlag(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
	vars, db := slapdEnv(srv), sqliteDB(t)
	r := command(t, vars, "-db", db, "-changes", "-create-users", "-json", "-quiet")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, ldapauth.ChangeSyncFullRefresh, decode(t, r.stdout).ChangeSync.Mode)
	srv.DeleteUser(t, "carol")
	r = command(t, vars, "-db", db, "-changes", "-create-users", "-json", "-quiet")
	require.Equal(t, exitOK, r.code, r.stderr)
	rep := decode(t, r.stdout)
	assert.Equal(t, ldapauth.ChangeSyncIncremental, rep.ChangeSync.Mode)
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
}

// lockedBuffer is a bytes.Buffer the command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestWatch(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
	vars, db := slapdEnv(srv), sqliteDB(t)
	ctx, stop := context.WithCancel(context.Background()) // SIGTERM, as main's NotifyContext makes it
	defer stop()
	var stdout, stderr lockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"-db", db, "-watch", "-create-users"}, &stdout, &stderr, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	}()
	// until polls the database; the bound only turns a hang into a failure.
	until := func(what string, cond func(*storetest.Contents) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if cond(snapshot(t, db)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("never: %s\nstderr:\n%s", what, stderr.String())
			}
		}
	}
	until("the first run", func(s *storetest.Contents) bool { return slices.Contains(s.Users, "carol") })
	srv.DeleteUser(t, "carol")
	until("carol removed", func(s *storetest.Contents) bool { return !slices.Contains(s.Users, "carol") })
	stop()
	select {
	case code := <-exited:
		assert.Equal(t, exitOK, code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not stop")
	}
	assert.Contains(t, stdout.String(), "users removed (1):\n  carol\n")
	assert.Contains(t, stderr.String(), "syncgroups: stopped after")
}

func TestWatchFlags(t *testing.T) {
	for _, args := range [][]string{{"-watch", "-dry-run"}, {"-watch", "-textfile", "x.prom"}} {
		r := command(t, map[string]string{}, args...)
		assert.Equal(t, exitUsage, r.code, strings.Join(args, " "))
		assert.Contains(t, r.stderr, "-watch")
	}
}

func TestWatchWithoutSyncProv(t *testing.T) {
	srv := slapdtest.Start(t)
	r := command(t, slapdEnv(srv), "-db", sqliteDB(t), "-watch", "-quiet")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "content synchronisation")
}
