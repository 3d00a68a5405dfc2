package sqlstore_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/pgtest"
)

// BenchmarkFirstSyncBatches writes what a first sync of 10,000 users
// writes (each user saved with three mapped fields, joined to an
// organisation and added to a synced group) in batches of 500 changes, as
// the sync makes them, into an empty database: the write path the sync's
// first run spends its time in.
func BenchmarkFirstSyncBatches(b *testing.B) {
	const users, perBatch = 10000, 500 / 3
	group := ldapauth.Group{DN: "cn=readers,ou=groups,dc=example,dc=com", Name: "readers"}
	var batches []*ldapauth.Batch
	for start := 0; start < users; start += perBatch {
		bt := &ldapauth.Batch{}
		if start == 0 {
			bt.SaveGroups = []ldapauth.Group{group}
		}
		for i := start; i < min(users, start+perBatch); i++ {
			name := fmt.Sprintf("user%06d", i)
			bt.SaveUsers = append(bt.SaveUsers, &ldapauth.User{Username: name, DN: "uid=" + name + ",ou=people,dc=example,dc=com",
				Fields: map[string]string{"first_name": "Generated", "last_name": "User" + name[4:], "email": name + "@example.com"}})
			bt.Joins = append(bt.Joins, ldapauth.OrganisationJoin{Username: name, OrganisationID: "1"})
			bt.AddMembers = append(bt.AddMembers, ldapauth.Membership{GroupDN: group.DN, Username: name})
		}
		batches = append(batches, bt)
	}
	// A durable server, as a deployment runs it: commits wait for the disk
	// (unless the store says otherwise). server-µs/user is its CPU time.
	durable, err := pgtest.NewWith(pgtest.Options{Durable: true})
	if err != nil {
		b.Skip(err) // pgtest.Start's rules: see the shared server's NewDatabase
	}
	defer durable.Stop()
	for _, be := range []struct {
		name   string
		dsn    func(b *testing.B) (string, string)
		server *pgtest.Server
	}{
		{"SQLite", func(b *testing.B) (string, string) {
			return sqlstore.DriverSQLite, filepath.Join(b.TempDir(), "bench.db")
		}, nil},
		{"PostgreSQL", func(b *testing.B) (string, string) { return sqlstore.DriverPostgres, durable.NewDatabase(b) }, durable},
	} {
		b.Run(be.name, func(b *testing.B) {
			var server time.Duration
			for b.Loop() {
				b.StopTimer()
				driver, dsn := be.dsn(b)
				s, err := sqlstore.Open(b.Context(), driver, dsn)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				cpu := be.server.CPUTime()
				for _, bt := range batches {
					if err := s.ApplyBatch(b.Context(), bt); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				server += be.server.CPUTime() - cpu
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*users), "µs/user")
			if be.server != nil {
				b.ReportMetric(float64(server.Microseconds())/float64(b.N*users), "server-µs/user")
			}
		})
	}
}
