package sqlstore_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// clock is a settable time for the store.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }
func saveUser(t *testing.T, s *sqlstore.Store, name string) {
	t.Helper()
	require.NoError(t, s.SaveUser(t.Context(), &ldapauth.User{Username: name, DN: "uid=" + name + ",dc=example,dc=com"}))
}

func TestSessions(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			s := b.open(t)
			c := newClock()
			s.SetClock(c.now)
			saveUser(t, s, "alice")
			saveUser(t, s, "carol")

			_, err := s.CreateSession(ctx, "nobody", time.Hour, 0, "")
			require.ErrorIs(t, err, sqlstore.ErrNoSuchUser, "sessions are for stored users only")

			id, err := s.CreateSession(ctx, "Alice", time.Hour, 0, "")
			require.NoError(t, err)
			assert.Len(t, id, 43, "32 random bytes, base64url")
			name, err := s.SessionUser(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, "alice", name)

			var stored string
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT id_hash FROM login_sessions`).Scan(&stored))
			assert.NotContains(t, stored, id, "only a hash of the ID is stored")
			assert.Len(t, stored, 64, "hex SHA-256")

			// A login from the same browser ends the session it had.
			id2, err := s.CreateSession(ctx, "alice", time.Hour, 0, id)
			require.NoError(t, err)
			_, err = s.SessionUser(ctx, id)
			require.ErrorIs(t, err, sqlstore.ErrNoSession, "the replaced session ended")

			// Expiry.
			c.advance(time.Hour)
			_, err = s.SessionUser(ctx, id2)
			require.ErrorIs(t, err, sqlstore.ErrNoSession, "expired")

			// The cap: the oldest sessions end.
			var ids []string
			for range 4 {
				id, err := s.CreateSession(ctx, "alice", time.Hour, 3, "")
				require.NoError(t, err)
				ids = append(ids, id)
				c.advance(time.Second)
			}
			n, err := s.Sessions(ctx, "alice")
			require.NoError(t, err)
			assert.Equal(t, 3, n)
			_, err = s.SessionUser(ctx, ids[0])
			require.ErrorIs(t, err, sqlstore.ErrNoSession, "the oldest went over the cap")
			for _, id := range ids[1:] {
				_, err = s.SessionUser(ctx, id)
				require.NoError(t, err)
			}

			carol, err := s.CreateSession(ctx, "carol", time.Hour, 3, "")
			require.NoError(t, err)
			require.NoError(t, s.DeleteSession(ctx, ids[3]))
			_, err = s.SessionUser(ctx, ids[3])
			require.ErrorIs(t, err, sqlstore.ErrNoSession, "logout")

			// The sync job removes alice: every session of hers ends.
			require.NoError(t, s.DeleteUser(ctx, "alice"))
			for _, id := range ids {
				_, err = s.SessionUser(ctx, id)
				require.ErrorIs(t, err, sqlstore.ErrNoSession)
			}
			_, err = s.SessionUser(ctx, carol)
			require.NoError(t, err, "other users keep theirs")

			// The sweep deletes expired rows.
			c.advance(2 * time.Hour)
			deleted, err := s.Sweep(ctx, time.Hour, 24*time.Hour)
			require.NoError(t, err)
			assert.EqualValues(t, 1, deleted)
			var rows int
			require.NoError(t, s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM login_sessions`).Scan(&rows))
			assert.Zero(t, rows)
		})
	}
}

func TestThrottle(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			s := b.open(t)
			c := newClock()
			s.SetClock(c.now)
			user := sqlstore.ThrottleRule{Key: "user:alice", Limit: 3, Backoff: time.Minute, MaxBackoff: 4 * time.Minute, Forget: time.Hour}
			client := sqlstore.ThrottleRule{Key: "client:192.0.2.1", Limit: 10, Backoff: time.Minute, MaxBackoff: time.Hour, Forget: time.Hour}
			rules := []sqlstore.ThrottleRule{user, client}

			for range 3 {
				by, _, err := s.TakeAttempt(ctx, rules)
				require.NoError(t, err)
				require.Equal(t, -1, by)
			}
			by, wait, err := s.TakeAttempt(ctx, rules)
			require.NoError(t, err)
			assert.Equal(t, 0, by, "the user's limit refuses the fourth")
			assert.Equal(t, time.Minute, wait)
			n, err := s.Attempts(ctx, client.Key, client.Forget)
			require.NoError(t, err)
			assert.Equal(t, 3, n, "a refused attempt is not counted")

			c.advance(time.Minute)
			by, _, err = s.TakeAttempt(ctx, rules)
			require.NoError(t, err)
			require.Equal(t, -1, by, "after the back-off")
			by, wait, _ = s.TakeAttempt(ctx, rules)
			assert.Equal(t, 0, by)
			assert.Equal(t, 2*time.Minute, wait, "the back-off doubles")
			c.advance(2 * time.Minute)
			_, _, _ = s.TakeAttempt(ctx, rules)
			c.advance(4 * time.Minute)
			_, _, _ = s.TakeAttempt(ctx, rules)
			_, wait, _ = s.TakeAttempt(ctx, rules)
			assert.Equal(t, 4*time.Minute, wait, "up to the maximum")

			require.NoError(t, s.ForgiveAttempt(ctx, user.Key))
			n, _ = s.Attempts(ctx, user.Key, user.Forget)
			assert.Equal(t, 5, n)
			require.NoError(t, s.ClearAttempts(ctx, user.Key))
			by, _, err = s.TakeAttempt(ctx, rules)
			require.NoError(t, err)
			assert.Equal(t, -1, by, "a sign-in clears the user's count")

			c.advance(time.Hour)
			n, _ = s.Attempts(ctx, client.Key, client.Forget)
			assert.Zero(t, n, "forgotten after an hour without attempts")

			// Concurrent attempts never overshoot the limit.
			other := sqlstore.ThrottleRule{Key: "user:carol", Limit: 3, Backoff: time.Hour, MaxBackoff: time.Hour, Forget: time.Hour}
			var taken atomic.Int32
			var wg sync.WaitGroup
			for range 12 {
				wg.Go(func() {
					by, _, err := s.TakeAttempt(ctx, []sqlstore.ThrottleRule{other})
					if assert.NoError(t, err) && by < 0 {
						taken.Add(1)
					}
				})
			}
			wg.Wait()
			assert.EqualValues(t, 3, taken.Load())

			// Known clients.
			saveUser(t, s, "alice")
			known, err := s.KnownClient(ctx, "alice", "192.0.2.1", 24*time.Hour)
			require.NoError(t, err)
			assert.False(t, known)
			require.NoError(t, s.RememberClient(ctx, "ALICE", "192.0.2.1"))
			known, _ = s.KnownClient(ctx, "alice", "192.0.2.1", 24*time.Hour)
			assert.True(t, known)
			known, _ = s.KnownClient(ctx, "alice", "192.0.2.2", 24*time.Hour)
			assert.False(t, known)
			c.advance(25 * time.Hour)
			known, _ = s.KnownClient(ctx, "alice", "192.0.2.1", 24*time.Hour)
			assert.False(t, known, "too long ago")
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tt := range []struct{ dsn, want string }{
		{"postgres://app:s3cret@db/app", "postgres://app:xxxxx@db/app"},
		{"postgres://app@db/app?password=s3cret", "postgres://app@db/app?password=xxxxx"},
		{"postgres://app@db/app?sslpassword=s3cret&sslmode=verify-full", "postgres://app@db/app?sslmode=verify-full&sslpassword=xxxxx"},
		{"postgres://app@db/app?SSLPassword=s3cret", "postgres://app@db/app?SSLPassword=xxxxx"},
		{"host=db user=app sslpassword=s3cret", "(a DSN with a password)"},
		{"login.db", "login.db"},
	} {
		got := sqlstore.Redact(tt.dsn)
		assert.Equal(t, tt.want, got)
		assert.NotContains(t, got, "s3cret")
	}
}

// TestSyncRemovalEndsSessions: a user the sync job removes (gone from the
// directory) loses every session at once; the others keep theirs.
func TestSyncRemovalEndsSessions(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			srv := ldaptest.Start(t, ldaptest.DemoDirectory())
			cfg, err := demo.Config(srv)
			require.NoError(t, err)
			store := b.open(t)
			cfg.Store = store
			a, err := ldapauth.New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { a.Close() })
			_, err = a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
			require.NoError(t, err)

			var carol []string
			for range 2 {
				id, err := store.CreateSession(ctx, "carol", time.Hour, 0, "")
				require.NoError(t, err)
				carol = append(carol, id)
			}
			alice, err := store.CreateSession(ctx, "alice", time.Hour, 0, "")
			require.NoError(t, err)

			d := ldaptest.DemoDirectory()
			d.Users = slices.DeleteFunc(d.Users, func(u ldaptest.User) bool { return u.Name == "carol" })
			require.NoError(t, srv.SetDirectory(d))
			rep, err := a.Sync(ctx, ldapauth.SyncOptions{})
			require.NoError(t, err)
			require.Equal(t, []string{"carol"}, rep.UsersRemoved)

			for _, id := range carol {
				_, err := store.SessionUser(ctx, id)
				require.ErrorIs(t, err, sqlstore.ErrNoSession)
			}
			n, err := store.Sessions(ctx, "carol")
			require.NoError(t, err)
			assert.Zero(t, n)
			_, err = store.SessionUser(ctx, alice)
			require.NoError(t, err, "alice is still in the directory")
		})
	}
}
