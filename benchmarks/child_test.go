package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// startSlapdTarget starts slapd with users generated users for one test,
// or skips it when slapd is not installed (fails under
// LDAPAUTH_REQUIRE_SLAPD=1).
func startSlapdTarget(t *testing.T, users int) *Target {
	t.Helper()
	target, stop, err := StartScaleTarget("slapd", users)
	if errors.Is(err, slapdtest.ErrNotInstalled) && os.Getenv(slapdtest.RequireEnv) != "1" {
		t.Skipf("%v; CI sets %s=1 to fail instead of skipping", err, slapdtest.RequireEnv)
	}
	require.NoError(t, err)
	t.Cleanup(stop)
	return target
}

// TestChurnDirectory: each round changes what the sync after 1% changes
// relies on, and the directory keeps its size: a sync after it updates 1%
// of the users, removes a thousandth and creates a thousandth, and the
// next round undoes the removals and creations.
func TestChurnDirectory(t *testing.T) {
	const users = 2000
	target := startSlapdTarget(t, users)
	store := ldapauth.NewMemStore()
	a, err := NewSyncer(target, store)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	ctx := t.Context()
	first, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
	require.NoError(t, err)

	for round := 1; round <= 2; round++ {
		require.NoError(t, ChurnDirectory(target.URL, users, round))
		rep, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
		require.NoError(t, err, "round %d", round)
		assert.Equal(t, first.DirectoryUsers, rep.DirectoryUsers, "round %d: the directory keeps its size", round)
		assert.Len(t, rep.UsersUpdated, users/100, "round %d: 1%% of the users' sn changed", round)
		assert.Len(t, rep.UsersRemoved, users/1000, "round %d", round)
		assert.Len(t, rep.UsersCreated, users/1000, "round %d", round)
		// A round deletes users no round deleted before and adds new ones.
		assert.Contains(t, rep.UsersRemoved, slapdtest.GeneratedUID(500+round-1), "round %d", round)
		assert.Contains(t, rep.UsersCreated, slapdtest.GeneratedUID(users+1+(round-1)*users/1000), "round %d", round)
	}
}

// TestChurnDirectoryRepeats: a round run again (as after a run that
// stopped half-way) finds its members already removed or added and still
// leaves readers as the round wants it.
func TestChurnDirectoryRepeats(t *testing.T) {
	const users = 2000
	target := startSlapdTarget(t, users)
	for range 2 {
		require.NoError(t, ChurnDirectory(target.URL, users, 1))
	}
	c, err := ldap.DialURL(target.URL)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.Bind(slapdtest.AdminDN, slapdtest.AdminPassword))
	res, err := c.Search(ldap.NewSearchRequest(slapdtest.GroupDN("readers"), ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"member"}, nil))
	require.NoError(t, err)
	require.Len(t, res.Entries, 1)
	members := res.Entries[0].GetAttributeValues("member")
	assert.NotContains(t, members, slapdtest.UserDN(slapdtest.GeneratedUID(500)), "deleted users leave readers")
	assert.Contains(t, members, slapdtest.UserDN(slapdtest.GeneratedUID(users+1)), "added users join readers")
	assert.Contains(t, members, slapdtest.UserDN(slapdtest.GeneratedUID(501)))
}

// TestMeasureScaleInChildren runs every case of the sync at scale in child
// processes (this test binary re-executed) into a MemStore and a SQLite
// store: each child checks its run did what its case says (a no-op sync
// writes nothing, a first sync creates every user, the sync after 1%
// changes writes at least 1% of them) and reports its own peak RSS.
func TestMeasureScaleInChildren(t *testing.T) {
	const users = 1000
	target := startSlapdTarget(t, users)
	profile := filepath.Join(t.TempDir(), "heap.pprof")
	t.Setenv(HeapProfileEnv, profile)
	for _, kind := range []ScaleStore{StoreMem, StoreSQLite} {
		t.Run(string(kind), func(t *testing.T) {
			rs, err := MeasureScaleInChildren(context.Background(), target, users, kind, 1, nil)
			require.NoError(t, err)
			require.Len(t, rs, len(ChildCases))
			for i, r := range rs {
				assert.Equal(t, ChildCases[i], r.Case)
				assert.Positive(t, r.MaxRSS, "%s: the child's peak RSS", r.Case)
				assert.Positive(t, r.Wall, "%s", r.Case)
				switch r.Case {
				case SteadySync, PagedSearchCase:
					assert.Zero(t, r.Changes, "%s", r.Case)
				case FirstSync:
					assert.GreaterOrEqual(t, r.Changes, users, "a first sync writes every user")
				case ChangedSync:
					assert.GreaterOrEqual(t, r.Changes, users/100)
				}
			}
			for _, c := range ChildCases[1:] {
				st, err := os.Stat(fmt.Sprintf("%s.%s.%s", profile, kind, c))
				require.NoError(t, err, "%s: the child writes the heap profile of its peak, its own file", c)
				assert.Positive(t, st.Size())
			}
			_, err = os.Stat(fmt.Sprintf("%s.%s.%s", profile, kind, PagedSearchCase))
			assert.ErrorIs(t, err, os.ErrNotExist, "the paged search is not profiled")
		})
	}
}

// TestMeasureWatchLatency: every user deleted in the directory leaves the
// store while WatchChanges runs, and the runner says when.
func TestMeasureWatchLatency(t *testing.T) {
	r, err := MeasureWatchLatency(t.Context(), WatchOptions{Users: 500, Deletions: 5, Store: StoreSQLite, SessionLog: 100}, nil)
	if errors.Is(err, slapdtest.ErrNotInstalled) && os.Getenv(slapdtest.RequireEnv) != "1" {
		t.Skipf("%v; CI sets %s=1 to fail instead of skipping", err, slapdtest.RequireEnv)
	}
	require.NoError(t, err)
	assert.Len(t, r.Latencies, 5, "one latency for each deleted user")
	assert.GreaterOrEqual(t, r.Runs, 5, "a run removed each")
	assert.Positive(t, r.StateLoads, "the SQL store's state loads are timed")
}

// TestMeasureCasesInChildrenRefuses: a case list that does not start with
// the floor, or names a case that does not exist, is refused before
// anything runs.
func TestMeasureCasesInChildrenRefuses(t *testing.T) {
	for _, cases := range [][]SyncCase{nil, {SteadySync}, {PagedSearchCase, "no-such-case"}} {
		_, err := MeasureCasesInChildren(t.Context(), &Target{}, 10, StoreMem, cases, 1, nil)
		assert.Error(t, err, "%q", cases)
	}
}
