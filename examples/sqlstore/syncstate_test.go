package sqlstore_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

func TestSyncState(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			driver, dsn := b.newDB(t)
			s := open(t, driver, dsn)
			state, err := s.LoadSyncState(t.Context())
			require.NoError(t, err)
			assert.Nil(t, state, "no state yet")
			require.NoError(t, s.SaveSyncState(t.Context(), []byte("first")))
			require.NoError(t, s.SaveSyncState(t.Context(), []byte{0, 1, 2, 0xff}))
			state, err = s.LoadSyncState(t.Context())
			require.NoError(t, err)
			assert.Equal(t, []byte{0, 1, 2, 0xff}, state, "replaced whole, bytes kept")

			again := open(t, driver, dsn)
			state, err = again.LoadSyncState(t.Context())
			require.NoError(t, err)
			assert.Equal(t, []byte{0, 1, 2, 0xff}, state, "a reopened database has it")
		})
	}
}

// TestSyncChangesResumes: a sync job that stops and starts again, with its
// database, reads only the changes since its last run.
func TestSyncChangesResumes(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
	vars := map[string]string{
		"LDAP_AUTH_URL":                          srv.URL,
		"LDAP_AUTH_SEARCH_BASE":                  slapdtest.PeopleDN,
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     slapdtest.GroupDN("readers"),
		"LDAP_SYNC_USER_USERNAME":                slapdtest.ServiceDN,
		"LDAP_SYNC_USER_PASSWORD":                slapdtest.ServicePassword,
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			driver, dsn := b.newDB(t)
			job := func() *ldapauth.SyncReport {
				store := open(t, driver, dsn)
				cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
				require.NoError(t, err)
				cfg.Store = store
				a, err := ldapauth.New(cfg)
				require.NoError(t, err)
				defer a.Close()
				rep, err := a.SyncChanges(t.Context(), ldapauth.SyncOptions{CreateUsers: true})
				require.NoError(t, err)
				require.True(t, rep.ChangeSync.StateSaved)
				require.NoError(t, store.Close())
				return rep
			}
			rep := job()
			assert.Equal(t, "full refresh", rep.ChangeSync.Mode)
			uid := "resume-" + b.name
			srv.AddUser(t, uid, "x-password", "readers")
			rep = job()
			assert.Equal(t, "incremental", rep.ChangeSync.Mode)
			assert.Equal(t, []string{uid}, rep.UsersCreated)
			srv.DeleteUser(t, uid)
			rep = job()
			assert.Equal(t, "incremental", rep.ChangeSync.Mode)
			assert.Equal(t, []string{uid}, rep.UsersRemoved)
			s := open(t, driver, dsn)
			_, err := s.User(t.Context(), uid)
			assert.ErrorIs(t, err, sqlstore.ErrNoSuchUser)
		})
	}
}
