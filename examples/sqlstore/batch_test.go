package sqlstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// TestSyncStoppedMidApply stops a first sync once its first batch is
// written (as a crash or a killed job would), then runs again: the second
// run completes the work, and the database ends as one clean run leaves
// another.
func TestSyncStoppedMidApply(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			srv := ldaptest.Start(t, ldaptest.DemoDirectory())
			syncer := func(store ldapauth.UserStore) *ldapauth.Authenticator {
				cfg, err := demo.Config(srv)
				require.NoError(t, err)
				cfg.SyncPageSize = 2 // batches of two changes: the demo's plan takes several
				cfg.Store = store
				a, err := ldapauth.New(cfg)
				require.NoError(t, err)
				t.Cleanup(func() { a.Close() })
				return a
			}

			clean := b.open(t)
			rep, err := syncer(clean).Sync(t.Context(), ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)
			want, err := storetest.Read(t.Context(), clean)
			require.NoError(t, err)

			store := b.open(t)
			a := syncer(store)
			ctx, cancel := context.WithCancel(t.Context())
			var stoppedAt ldapauth.SyncProgress
			_, err = a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true, Progress: func(p ldapauth.SyncProgress) {
				if p.Phase == ldapauth.SyncApply && p.Done > 0 && ctx.Err() == nil {
					stoppedAt = p
					cancel()
				}
			}})
			require.ErrorIs(t, err, context.Canceled)
			require.Less(t, stoppedAt.Done, stoppedAt.Total, "stopped part-way: %+v", stoppedAt)
			partial, err := storetest.Read(t.Context(), store)
			require.NoError(t, err)
			require.NotEqual(t, want, partial, "the stopped run left work undone")

			again, err := a.Sync(t.Context(), ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)
			assert.True(t, again.Applied)
			assert.Less(t, again.Counts.Changes(), rep.Counts.Changes(), "the second run writes only what the first did not")
			got, err := storetest.Read(t.Context(), store)
			require.NoError(t, err)
			assert.Equal(t, want, got, "the second run completes the store")
		})
	}
}
