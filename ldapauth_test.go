package ldapauth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// newAuth starts a demo directory and an Authenticator configured through
// the environment variables, as a Flagsmith deployment would be, plus extra.
func newAuth(t testing.TB, extra map[string]string) (*ldapauth.Authenticator, *ldaptest.Server, *ldapauth.MemStore) {
	t.Helper()
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	return authFor(t, srv, extra)
}

func authFor(t testing.TB, srv *ldaptest.Server, extra map[string]string) (*ldapauth.Authenticator, *ldaptest.Server, *ldapauth.MemStore) {
	t.Helper()
	vars := srv.Env()
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := ldapauth.LoadConfig(env(vars))
	require.NoError(t, err)
	store := ldapauth.NewMemStore()
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a, srv, store
}

func TestAuthenticateSuccess(t *testing.T) {
	a, srv, store := newAuth(t, nil)
	u, err := a.Authenticate(context.Background(), "alice", "alice-password")
	require.NoError(t, err)
	assert.Equal(t, "alice", u.Username)
	assert.Equal(t, srv.UserDN("alice"), u.DN)
	assert.Equal(t, map[string]string{"username": "alice", "first_name": "Alice", "last_name": "Liddell", "email": "alice@example.com"}, u.Fields)
	assert.ElementsMatch(t, []string{srv.GroupDN("staff"), srv.GroupDN("ldapusers"), srv.GroupDN("readers")}, u.Groups)

	stored := storetest.User(store, "alice")
	require.NotNil(t, stored, "the store got the user")
	assert.Equal(t, u.Fields, stored.Fields)
	assert.Equal(t, u.DN, stored.DN)
}

func TestAuthenticateStoresDirectorySpelling(t *testing.T) {
	a, _, store := newAuth(t, nil)
	u, err := a.Authenticate(context.Background(), "ALICE", "alice-password")
	require.NoError(t, err)
	assert.Equal(t, "alice", u.Username, "the directory's value, not what was typed")
	snap, err := storetest.Read(context.Background(), store)
	require.NoError(t, err)
	assert.Equal(t, []string{"alice"}, snap.Users)
}

func TestAuthenticateNonASCIIAndEscapedNames(t *testing.T) {
	a, _, store := newAuth(t, nil)
	for _, name := range []string{"jürgen", "dave(ops"} {
		t.Run(name, func(t *testing.T) {
			u, err := a.Authenticate(context.Background(), name, name+"-password")
			require.NoError(t, err)
			assert.Equal(t, name, u.Username)
			assert.NotNil(t, storetest.User(store, name))
		})
	}
}

func TestAuthenticateWrongPassword(t *testing.T) {
	a, srv, store := newAuth(t, nil)
	const password = "not-alices-password"
	_, err := a.Authenticate(context.Background(), "alice", password)
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	assert.NotErrorIs(t, err, ldapauth.ErrUnknownUser)
	assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
	var lerr *ldapauth.LoginError
	require.ErrorAs(t, err, &lerr)
	assert.Equal(t, srv.UserDN("alice"), lerr.BindName, "the error says which bind name was tried")
	assert.Equal(t, "django_python3_ldap.utils.format_username_openldap", lerr.Formatter)
	assert.NotContains(t, err.Error(), password)
	assert.Nil(t, storetest.User(store, "alice"), "nothing stored")
}

func TestAuthenticateUnknownUser(t *testing.T) {
	a, _, _ := newAuth(t, nil)
	_, err := a.Authenticate(context.Background(), "nobody", "whatever")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	assert.NotContains(t, err.Error(), "whatever")
}

// A bind that succeeds but a search that finds nothing is an unknown user,
// which still matches ErrInvalidCredentials.
func TestAuthenticateUnknownUserAfterBind(t *testing.T) {
	a, _, _ := newAuth(t, map[string]string{"LDAP_AUTH_OBJECT_CLASS": "inetOrgPerson"})
	_, err := a.Authenticate(context.Background(), "alice", "alice-password")
	require.ErrorIs(t, err, ldapauth.ErrUnknownUser)
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	assert.NotErrorIs(t, err, ldapauth.ErrNotPermitted)
}

// countingListener accepts on loopback and counts connections; it never
// answers.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func listenCounting(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{Listener: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cl.accepted.Add(1)
			cl.mu.Lock()
			cl.conns = append(cl.conns, c)
			cl.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cl.mu.Lock()
		defer cl.mu.Unlock()
		for _, c := range cl.conns {
			c.Close()
		}
	})
	return cl
}

func (cl *countingListener) URL() string { return "ldap://" + cl.Addr().String() }

func TestAuthenticateRefusesBeforeAnyIO(t *testing.T) {
	ln := listenCounting(t)
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, ReceiveTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	for _, c := range []struct{ user, pass string }{
		{"alice", ""},
		{"", "alice-password"},
		{"", ""},
		{"alice\x00", "x"},
		{"alice", "x\x00y"},
		{"\xff\xfe", "x"},
	} {
		_, err := a.Authenticate(context.Background(), c.user, c.pass)
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "%q/%q", c.user, c.pass)
	}
	// A real attempt does reach the listener, so a zero count above is
	// meaningful.
	_, err = a.Authenticate(context.Background(), "alice", "x")
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
	assert.Equal(t, int64(1), ln.accepted.Load(), "only the last attempt connected")
}

// A formatter that makes an empty or malformed bind name is refused before
// any I/O: an empty name with a password is an unauthenticated bind on some
// servers.
func TestAuthenticateRefusesBadBindNameBeforeAnyIO(t *testing.T) {
	ln := listenCounting(t)
	for _, bindName := range []string{"", "uid=a\x00b,dc=example,dc=com", "\xff"} {
		t.Run(fmt.Sprintf("%q", bindName), func(t *testing.T) {
			a, err := ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, ReceiveTimeout: 100 * time.Millisecond,
				FormatUsername: ldapauth.UsernameFormatterFunc(func(*ldapauth.Config, string) (string, error) { return bindName, nil })})
			require.NoError(t, err)
			t.Cleanup(func() { a.Close() })
			_, err = a.Authenticate(context.Background(), "alice", "alice-password")
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			var lerr *ldapauth.LoginError
			require.ErrorAs(t, err, &lerr)
			assert.Contains(t, lerr.Formatter, "UsernameFormatterFunc", "the error names the formatter")
		})
	}
	assert.Zero(t, ln.accepted.Load(), "no connection was made")
}

func TestAuthenticateInjectionNeverLogsIn(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, _, store := authFor(t, srv, map[string]string{
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                srv.GroupDN("ldapusers"),
	})
	for _, name := range []string{"*", "*)(uid=*", "admin)(|(uid=*", "alice)(|(uid=*", "alice\x00", "*alice*", `alice\`} {
		for _, pass := range []string{"alice-password", "*", "x"} {
			_, err := a.Authenticate(context.Background(), name, pass)
			require.Error(t, err, "%q must not log in", name)
			assert.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "%q", name)
		}
	}
	snap, err := storetest.Read(context.Background(), store)
	require.NoError(t, err)
	assert.Empty(t, snap.Users)
}

func TestAuthenticateLoginGroup(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, _, store := authFor(t, srv, map[string]string{
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                srv.GroupDN("ldapusers"),
	})
	_, err := a.Authenticate(context.Background(), "alice", "alice-password")
	require.NoError(t, err, "alice is in the login group")

	_, err = a.Authenticate(context.Background(), "bob", "bob-password")
	require.ErrorIs(t, err, ldapauth.ErrNotPermitted, "bob is outside the login group")
	assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	assert.Nil(t, storetest.User(store, "bob"))

	_, err = a.Authenticate(context.Background(), "bob", "wrong")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a wrong password never says whether the user is in the group")
	assert.NotErrorIs(t, err, ldapauth.ErrNotPermitted)
}

func TestAuthenticateSyncedGroupsAcrossLogins(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	readers, marvel := srv.GroupDN("readers"), srv.GroupDN("marvel")
	a, _, store := authFor(t, srv, map[string]string{
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     readers + ":" + marvel,
	})
	ctx := context.Background()
	_, err := a.Authenticate(ctx, "bob", "bob-password")
	require.NoError(t, err)
	members, ok := storetest.Members(store, readers)
	require.True(t, ok, "the group was created on login")
	assert.Equal(t, []string{"bob"}, members)
	members, _ = storetest.Members(store, marvel)
	assert.Equal(t, []string{"bob"}, members)
	g, _ := storetest.GroupOf(store, marvel)
	assert.Equal(t, "marvel", g.Name, "the group is named after its first RDN")

	// bob leaves marvel in the directory; his next login removes him there.
	dir := ldaptest.DemoDirectory()
	for i := range dir.Users {
		if dir.Users[i].Name == "bob" {
			dir.Users[i].Groups = []string{"readers"}
		}
	}
	require.NoError(t, srv.SetDirectory(dir))
	_, err = a.Authenticate(ctx, "bob", "bob-password")
	require.NoError(t, err)
	members, _ = storetest.Members(store, marvel)
	assert.Empty(t, members, "removed from the group he left")
	members, _ = storetest.Members(store, readers)
	assert.Equal(t, []string{"bob"}, members)

	// alice is in readers only: marvel is not created for her, and the
	// organisation join is repeated safely on every login.
	for range 3 {
		_, err = a.Authenticate(ctx, "alice", "alice-password")
		require.NoError(t, err)
	}
	members, _ = storetest.Members(store, readers)
	assert.Equal(t, []string{"alice", "bob"}, members)
	assert.Equal(t, []string{"1"}, storetest.Organisations(store, "alice"))
	assert.Equal(t, []string{"1"}, storetest.Organisations(store, "bob"))
}

func TestAuthenticateServiceAccount(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, _, store := authFor(t, srv, map[string]string{
		"LDAP_AUTH_CONNECTION_USERNAME": srv.UserDN("svc"),
		"LDAP_AUTH_CONNECTION_PASSWORD": "svc-password",
	})
	u, err := a.Authenticate(context.Background(), "carol", "carol-password")
	require.NoError(t, err)
	assert.Equal(t, "carol", u.Username)
	assert.NotNil(t, storetest.User(store, "carol"))

	_, err = a.Authenticate(context.Background(), "carol", "wrong")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "the user's password is still checked")

	bad, _, _ := authFor(t, srv, map[string]string{
		"LDAP_AUTH_CONNECTION_USERNAME": srv.UserDN("svc"),
		"LDAP_AUTH_CONNECTION_PASSWORD": "not-the-service-password",
	})
	_, err = bad.Authenticate(context.Background(), "carol", "carol-password")
	require.ErrorIs(t, err, ldapauth.ErrServiceAccount)
	assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a service-account failure is not the user's fault")
	assert.NotContains(t, err.Error(), "not-the-service-password")
}

func TestAuthenticateTLS(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	dir := t.TempDir()
	rightCA := filepath.Join(dir, "right.pem")
	require.NoError(t, os.WriteFile(rightCA, srv.CACertPEM(), 0o644))
	wrongCA := writeCA(t)

	for _, mode := range []struct {
		name string
		env  map[string]string
	}{
		{"StartTLS", map[string]string{"LDAP_AUTH_URL": srv.URL(), "LDAP_AUTH_USE_TLS": "true"}},
		{"LDAPS", map[string]string{"LDAP_AUTH_URL": srv.LDAPSURL()}},
	} {
		t.Run(mode.name+" right CA", func(t *testing.T) {
			mode.env["LDAP_AUTH_TLS_CA_FILE"] = rightCA
			a, _, _ := authFor(t, srv, mode.env)
			u, err := a.Authenticate(context.Background(), "alice", "alice-password")
			require.NoError(t, err)
			assert.Equal(t, "alice", u.Username)
		})
		t.Run(mode.name+" wrong CA", func(t *testing.T) {
			mode.env["LDAP_AUTH_TLS_CA_FILE"] = wrongCA
			a, _, store := authFor(t, srv, mode.env)
			_, err := a.Authenticate(context.Background(), "alice", "alice-password")
			var tlsErr *ldapauth.TLSError
			require.ErrorAs(t, err, &tlsErr)
			assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.Nil(t, storetest.User(store, "alice"))
		})
		t.Run(mode.name+" system roots do not trust a private CA", func(t *testing.T) {
			delete(mode.env, "LDAP_AUTH_TLS_CA_FILE")
			a, _, _ := authFor(t, srv, mode.env)
			_, err := a.Authenticate(context.Background(), "alice", "alice-password")
			var tlsErr *ldapauth.TLSError
			require.ErrorAs(t, err, &tlsErr, "certificates are verified by default")
		})
	}
}

// A server that accepts and never answers gives ErrUnavailable once the
// receive timeout passes, never a hang.
func TestAuthenticateUnresponsiveServer(t *testing.T) {
	ln := listenCounting(t)
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, ReceiveTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a safety net, not the bound under test
	defer cancel()
	_, err = a.Authenticate(ctx, "alice", "alice-password")
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
	assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	require.NoError(t, ctx.Err(), "the receive timeout ended the call, not the safety net")
}

func TestAuthenticateNothingListening(t *testing.T) {
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{closedURL(t)}})
	require.NoError(t, err)
	_, err = a.Authenticate(context.Background(), "alice", "alice-password")
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
}

// Cancelling ctx while the bind is in flight (answered on the server's
// side, the answer held back by the proxy) ends the call with ctx's error.
func TestAuthenticateCancellation(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	p := faultproxy.Start(t, hostPort(srv.URL()))
	p.StallAfter(0)
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{p.URL()}, ReceiveTimeout: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	whenStalled(t, p, 1, cancel)
	_, err = a.Authenticate(ctx, "alice", "alice-password")
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	assert.Equal(t, int64(1), p.Stalled(), "cancelled while the bind's answer was held")
}

func TestAuthenticateDeadline(t *testing.T) {
	ln := listenCounting(t)
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, ReceiveTimeout: time.Hour})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = a.Authenticate(ctx, "alice", "alice-password")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
}

func TestAuthenticateConcurrent(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, _, store := authFor(t, srv, map[string]string{
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     srv.GroupDN("readers") + ":" + srv.GroupDN("marvel"),
	})
	users := []string{"alice", "bob", "carol", "jürgen"}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := users[i%len(users)]
			pass := name + "-password"
			wrong := i%5 == 0
			if wrong {
				pass = "wrong"
			}
			for range 5 {
				_, err := a.Authenticate(context.Background(), name, pass)
				switch {
				case wrong && !errors.Is(err, ldapauth.ErrInvalidCredentials):
					errs <- fmt.Errorf("%s with a wrong password: %v", name, err)
				case !wrong && err != nil:
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	members, _ := storetest.Members(store, srv.GroupDN("marvel"))
	assert.Equal(t, []string{"bob", "carol"}, members)
}

func TestMemStoreContract(t *testing.T) {
	ctx := context.Background()
	s := ldapauth.NewMemStore()
	require.NoError(t, s.SaveUser(ctx, &ldapauth.User{Username: "Alice", Fields: map[string]string{"email": "a@x"}}))
	require.NoError(t, s.SaveUser(ctx, &ldapauth.User{Username: "alice", Fields: map[string]string{"email": "b@x"}}))
	assert.Equal(t, "b@x", storetest.User(s, "ALICE").Fields["email"], "usernames are case-insensitive keys")
	require.Error(t, s.SetMember(ctx, "cn=g,dc=x", "alice", true), "adding to a missing group is an error")
	require.NoError(t, s.SetMember(ctx, "cn=g,dc=x", "alice", false), "removing from a missing group is not")
	require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: "CN=G,DC=X", Name: "G"}))
	require.NoError(t, s.SetMember(ctx, "cn=g, dc=x", "alice", true))
	require.NoError(t, s.SetMember(ctx, "cn=g,dc=x", "alice", true))
	members, ok := storetest.Members(s, "cn=G,dc=X")
	require.True(t, ok, "group DNs compare parsed and case-insensitively")
	assert.Equal(t, []string{"alice"}, members)
	require.NoError(t, s.DeleteUser(ctx, "ALICE"))
	members, _ = storetest.Members(s, "cn=g,dc=x")
	assert.Empty(t, members)
	require.NoError(t, s.DeleteGroup(ctx, "cn=g,dc=x"))
	require.NoError(t, s.DeleteGroup(ctx, "cn=g,dc=x"))
	snap, err := storetest.Read(ctx, s)
	require.NoError(t, err)
	assert.Empty(t, snap.Users)
	assert.Empty(t, snap.Groups)
}

func TestGroupName(t *testing.T) {
	assert.Equal(t, "Readers", ldapauth.GroupName("CN=Readers,CN=Roles,CN=webapp01,dc=admin,dc=com"))
	assert.Equal(t, "a,b", ldapauth.GroupName(`cn=a\,b,dc=x`))
}

func BenchmarkAuthenticate(b *testing.B) {
	a, _, _ := newAuth(b, nil)
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Authenticate(ctx, "alice", "alice-password"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Authenticate(ctx, "alice", "alice-password"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// joinFails is a store whose organisation join fails.
type joinFails struct{ *ldapauth.MemStore }

var errDBDown = errors.New("db down")

func (joinFails) JoinOrganisation(context.Context, string, string) error { return errDBDown }

// failingDirectory answers every search with a network error, as a
// connection reset in the middle of the group checks would.
var failingDirectory = ldapauth.DirectoryFunc(func(context.Context, *ldap.SearchRequest) (*ldap.SearchResult, error) {
	return nil, ldap.NewError(ldap.ErrorNetwork, errors.New("connection reset by peer"))
})

// Errors wrapped through several layers say "ldapauth:" once.
func TestErrorsPrefixedOnce(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	t.Run("a store error from the group syncer", func(t *testing.T) {
		a := syncAuth(t, syncVars(srv, nil), joinFails{ldapauth.NewMemStore()})
		_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
		require.ErrorIs(t, err, errDBDown)
		var serr *ldapauth.StoreError
		require.ErrorAs(t, err, &serr)
		assert.Equal(t, 1, strings.Count(err.Error(), "ldapauth:"), "prefixed once: %v", err)
	})
	t.Run("a network error in a nested group check", func(t *testing.T) {
		a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_AUTH_NESTED_GROUPS": "active_directory"}), ldapauth.NewMemStore(),
			func(c *ldapauth.Config) {
				c.SyncRelations = ldapauth.RelationSyncerFunc(func(ctx context.Context, cfg *ldapauth.Config, u *ldapauth.User, _ ldapauth.Directory) error {
					return ldapauth.SyncUserGroups{}.SyncRelations(ctx, cfg, u, failingDirectory)
				})
			})
		_, err := a.Authenticate(safetyNet(t), "alice", "alice-password") // alice is in readers, not in marvel
		require.ErrorIs(t, err, ldapauth.ErrUnavailable)
		assert.Equal(t, 1, strings.Count(err.Error(), "ldapauth:"), "prefixed once: %v", err)
	})
	t.Run("a formatter's configuration error", func(t *testing.T) {
		a, err := ldapauth.New(&ldapauth.Config{URLs: []string{srv.URL()},
			FormatUsername: ldapauth.UsernameFormatterFunc(func(cfg *ldapauth.Config, name string) (string, error) {
				return ldapauth.ActiveDirectoryPrincipalFormatter{}.FormatUsername(cfg, name) // no domain: an error
			})})
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		_, err = a.Authenticate(safetyNet(t), "alice", "alice-password")
		require.ErrorIs(t, err, ldapauth.ErrConfig)
		assert.Equal(t, 1, strings.Count(err.Error(), "ldapauth:"), "prefixed once: %v", err)
	})
}
