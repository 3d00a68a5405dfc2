package ldapauth_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// BenchmarkSyncChanges compares, on one slapd with syncprov and
// benchUsers users (LDAPAUTH_BENCH_USERS sets another number, e.g. 100000:
// slapd then bulk-loads them in a minute or so), a steady-state full sync
// with a change-driven run after 10 modified users (the modifications are
// not timed). Compare the two with benchstat: the target is a
// change-driven run at most 1% of a full one.
func BenchmarkSyncChanges(b *testing.B) {
	users := benchUsers
	if v := os.Getenv("LDAPAUTH_BENCH_USERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			b.Fatalf("LDAPAUTH_BENCH_USERS=%q: want a number of users, at least 10", v)
		}
		users = n
	}
	srv, err := slapdtest.New(slapdtest.Options{SyncProv: true, SessionLog: 1000, GeneratedUsers: users,
		GeneratedUserGroups: []string{"readers"}, LogLevel: "0"})
	if err != nil {
		b.Skip(err)
	}
	defer srv.Stop()
	store := ldapauth.NewMemStore()
	a := syncAuth(b, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	ctx := context.Background()
	if _, err := a.SyncChanges(ctx, ldapauth.SyncOptions{CreateUsers: true}); err != nil {
		b.Fatal(err)
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rep, err := a.Sync(ctx, ldapauth.SyncOptions{})
			if err != nil || rep.Counts.Changes() != 0 {
				b.Fatalf("not a steady-state run: %v %v", err, rep)
			}
		}
	})
	round := 0 // each run's modifications differ from the last's
	b.Run("changes-10", func(b *testing.B) {
		admin := srv.Admin(b)
		b.ReportAllocs()
		for range b.N {
			round++
			b.StopTimer()
			for j := 1; j <= 10; j++ {
				mod := ldap.NewModifyRequest(slapdtest.UserDN(slapdtest.GeneratedUID(j)), nil)
				mod.Replace("mail", []string{fmt.Sprintf("run%d-%d@example.com", round, j)})
				if err := admin.Modify(mod); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			rep, err := a.SyncChanges(ctx, ldapauth.SyncOptions{})
			if err != nil || rep.ChangeSync.Mode != ldapauth.ChangeSyncIncremental || len(rep.UsersUpdated) != 10 {
				b.Fatalf("not an incremental run of 10 changes: %v\n%v", err, rep)
			}
		}
	})
}
