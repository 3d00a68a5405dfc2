package ldapauth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// batches is a MemStore that records the size of each batch, and fails the
// batch numbered failAt (from 1) without applying it.
type batches struct {
	*ldapauth.MemStore
	sizes  []int
	failAt int
}

var errBatch = errors.New("batch refused")

func (b *batches) ApplyBatch(ctx context.Context, batch *ldapauth.Batch) error {
	b.sizes = append(b.sizes, batch.Len())
	if len(b.sizes) == b.failAt {
		return errBatch
	}
	return b.MemStore.ApplyBatch(ctx, batch)
}

// TestSyncBatches: a BatchStore gets each page of users as one batch (their
// creates with their organisation joins, as the page is read; GLAuth sends
// every entry in one page) and the rest of the plan in batches of at most
// the page size, every change once; a failed batch stops the run with a
// StoreError, and the next run writes the rest.
func TestSyncBatches(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	store := &batches{MemStore: ldapauth.NewMemStore(), failAt: 2}
	a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNC_PAGE_SIZE": "3"}), store)

	rep, err := a.Sync(t.Context(), ldapauth.SyncOptions{CreateUsers: true})
	require.ErrorIs(t, err, errBatch)
	var serr *ldapauth.StoreError
	require.ErrorAs(t, err, &serr)
	assert.Equal(t, "apply batch", serr.Op)
	assert.False(t, rep.Applied)
	require.Len(t, store.sizes, 2, "the run stopped at the failed batch")
	assert.Equal(t, 2*rep.Counts.UsersCreated, store.sizes[0], "the page of users: each created and joining the organisation")
	assert.Equal(t, 3, store.sizes[1], "then the memberships, a page size at a time")

	store.sizes, store.failAt = nil, 0
	again, err := a.Sync(t.Context(), ldapauth.SyncOptions{CreateUsers: true})
	require.NoError(t, err)
	total := 0
	for _, n := range store.sizes {
		assert.LessOrEqual(t, n, 3, "a batch is at most a page: %v", store.sizes)
		total += n
	}
	assert.Zero(t, again.Counts.UsersCreated, "the users were written with their page")
	assert.Equal(t, again.Counts.Changes(), total, "every change planned is in one batch")
	assert.Less(t, again.Counts.Changes(), rep.Counts.Changes(), "the first batch was kept")

	store.sizes = nil
	third, err := a.Sync(t.Context(), ldapauth.SyncOptions{CreateUsers: true})
	require.NoError(t, err)
	assert.Zero(t, third.Counts.Changes())
	assert.Empty(t, store.sizes, "nothing to do, no batch")
}
