package sqlstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
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
				if p.Phase == "apply" && p.Done > 0 && ctx.Err() == nil {
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
			assert.Less(t, again.Changes(), rep.Changes(), "the second run writes only what the first did not")
			got, err := storetest.Read(t.Context(), store)
			require.NoError(t, err)
			assert.Equal(t, want, got, "the second run completes the store")
		})
	}
}

// TestBatchRefusalNamed: a batch whose join or membership names a user or
// group that neither the store nor the batch holds is refused with
// ErrNoSuchUser or ErrNoSuchGroup naming it (the database's foreign keys
// refuse it; the store then names what was missing), while one that saves
// the user and group it uses is applied.
func TestBatchRefusalNamed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			s := b.open(t)
			require.NoError(t, s.SaveUser(ctx, &ldapauth.User{Username: "alice"}))
			require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: storetest.ReadersDN, Name: "readers"}))
			for _, c := range []struct {
				name  string
				batch ldapauth.Batch
				want  error
				names string
			}{
				{"join of an unknown user", ldapauth.Batch{Joins: []ldapauth.OrganisationJoin{{Username: "alice", OrganisationID: "1"}, {Username: "Nobody", OrganisationID: "1"}}},
					sqlstore.ErrNoSuchUser, `"Nobody"`},
				{"member of an unknown group", ldapauth.Batch{
					SaveUsers:  []*ldapauth.User{{Username: "bob"}},
					AddMembers: []ldapauth.Membership{{GroupDN: storetest.ReadersDN, Username: "bob"}, {GroupDN: storetest.MarvelDN, Username: "alice"}}},
					sqlstore.ErrNoSuchGroup, storetest.MarvelDN},
				{"unknown member", ldapauth.Batch{AddMembers: []ldapauth.Membership{{GroupDN: storetest.ReadersDN, Username: "alice"}, {GroupDN: storetest.ReadersDN, Username: "nobody"}}},
					sqlstore.ErrNoSuchUser, `"nobody"`},
			} {
				err := s.ApplyBatch(ctx, &c.batch)
				require.ErrorIs(t, err, c.want, c.name)
				assert.ErrorContains(t, err, c.names, c.name)
			}
			snap, err := storetest.Read(ctx, s)
			require.NoError(t, err)
			assert.Equal(t, []string{"alice"}, snap.Users, "the refused batches wrote nothing")

			require.NoError(t, s.ApplyBatch(ctx, &ldapauth.Batch{
				SaveGroups: []ldapauth.Group{{DN: storetest.MarvelDN, Name: "marvel"}},
				SaveUsers:  []*ldapauth.User{{Username: "Carol"}},
				Joins:      []ldapauth.OrganisationJoin{{Username: "carol", OrganisationID: "1"}},
				AddMembers: []ldapauth.Membership{{GroupDN: storetest.MarvelDN, Username: "Carol"}},
			}), "the batch saves the user and the group it uses")
			carol, err := s.User(ctx, "carol")
			require.NoError(t, err)
			assert.Equal(t, []string{"1"}, carol.Organisations)
			assert.Equal(t, []ldapauth.Group{{DN: storetest.MarvelDN, Name: "marvel"}}, carol.Groups)
		})
	}
}
