package ad_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// Active Directory has no RFC 4533 content synchronisation: SyncChanges
// says so and runs the full sync, and WatchChanges refuses to start.
// (DirSync, Active Directory's own change tracking, is not built yet.)
func TestSyncChangesAD(t *testing.T) {
	d := dc.Get(t)
	o := newADObjects(t, d)
	u1 := o.user("chgu1")
	team := o.group("chgteam", d.UserDN(u1))
	store := ldapauth.NewMemStore()
	a := authWithStore(t, d, syncEnv(d, []string{team}, nil), store)
	rep, err := a.SyncChanges(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
	require.NoError(t, err)
	require.NotNil(t, rep.ChangeSync)
	assert.Equal(t, ldapauth.ChangeSyncFull, rep.ChangeSync.Mode)
	assert.Contains(t, rep.ChangeSync.Fallback, "content synchronisation")
	assert.True(t, rep.Applied)
	m, _ := storetest.Members(store, team)
	assert.Equal(t, []string{u1}, m)

	err = a.WatchChanges(context.Background(), ldapauth.WatchOptions{})
	require.ErrorIs(t, err, ldapauth.ErrNoContentSync)
}
