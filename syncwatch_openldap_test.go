package ldapauth_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// watchReports collects what a watcher reports.
type watchReports struct {
	runs chan *ldapauth.SyncReport
	lost chan error
}

func (w *watchReports) report(rep *ldapauth.SyncReport, err error) {
	if rep == nil {
		select {
		case w.lost <- err:
		default:
		}
		return
	}
	w.runs <- rep
}

// until waits for runs of the watcher until cond holds. The bound is only
// there so that a broken watcher fails the test instead of hanging it.
func (w *watchReports) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.After(30 * time.Second)
	for !cond() {
		select {
		case rep := <-w.runs:
			require.NotNil(t, rep.ChangeSync)
		case <-limit:
			t.Fatalf("the watcher never applied: %s", what)
		}
	}
}

func TestWatchChangesOpenLDAP(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	w := &watchReports{runs: make(chan *ldapauth.SyncReport, 1000), lost: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- a.WatchChanges(ctx, ldapauth.WatchOptions{SyncOptions: ldapauth.SyncOptions{CreateUsers: true},
			Report: w.report, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	}()

	w.until(t, "the first run", func() bool { return storetest.User(store, "carol") != nil })
	srv.DeleteUser(t, "carol")
	w.until(t, "carol's deletion", func() bool { return storetest.User(store, "carol") == nil })
	srv.AddUser(t, "frank", "frank-password", "readers")
	w.until(t, "frank's creation", func() bool { return slices.Contains(members(t, store, "readers"), "frank") })
	srv.AddMember(t, "marvel", slapdtest.UserDN("alice"))
	w.until(t, "alice joining marvel", func() bool { return slices.Contains(members(t, store, "marvel"), "alice") })

	srv.Restart(t)
	srv.DeleteUser(t, "erin")
	w.until(t, "erin's deletion after the restart", func() bool { return storetest.User(store, "erin") == nil })
	select {
	case err := <-w.lost:
		assert.Error(t, err)
	default:
		t.Fatal("the lost connection was not reported")
	}
	srv.DeleteUser(t, "frank")
	w.until(t, "frank's deletion on the new connection", func() bool { return storetest.User(store, "frank") == nil })

	cancel()
	require.NoError(t, <-done)
	full := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, DryRun: true})
	assert.Zero(t, full.Counts.Changes(), "%s", full)
}

func TestWatchChangesOpenLDAPWithoutSyncProv(t *testing.T) {
	srv := slapdtest.Start(t)
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), ldapauth.NewMemStore())
	err := a.WatchChanges(context.Background(), ldapauth.WatchOptions{})
	require.ErrorIs(t, err, ldapauth.ErrNoContentSync)
}
