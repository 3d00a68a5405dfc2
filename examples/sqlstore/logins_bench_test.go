package sqlstore_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
)

// BenchmarkSessions measures a login's session work (create, with the cap
// checked) and a request's lookup with many sessions stored: both use
// indexes, so their cost should not grow with the table (the in-memory
// sessions this replaced scanned every session on each login).
//
//	go test -run '^$' -bench Sessions -benchtime 2000x ./examples/sqlstore/
func BenchmarkSessions(b *testing.B) {
	for _, rows := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			s, err := sqlstore.Open(b.Context(), sqlstore.DriverSQLite, filepath.Join(b.TempDir(), "bench.db"))
			require.NoError(b, err)
			b.Cleanup(func() { s.Close() })
			db := s.DB()
			_, err = db.ExecContext(b.Context(), `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999)
				INSERT INTO ldap_users (username_key, username, dn, created_at, updated_at)
				SELECT 'u' || i, 'u' || i, 'uid=u' || i, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM n`)
			require.NoError(b, err)
			_, err = db.ExecContext(b.Context(), `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
				INSERT INTO login_sessions (id_hash, username_key, created_at, expires_at)
				SELECT printf('%064d', i), 'u' || (i % 1000), i, 9000000000000000 FROM n`, rows)
			require.NoError(b, err)
			id, err := s.CreateSession(b.Context(), "u1", time.Hour, 0, "")
			require.NoError(b, err)

			b.Run("create", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.CreateSession(b.Context(), "u7", time.Hour, 10, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("lookup", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.SessionUser(b.Context(), id); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
