package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// env is a login server over the demo directory and a SQLite database,
// served by httptest.
type env struct {
	srv   *httptest.Server
	store *sqlstore.Store
	dir   *ldaptest.Server
}

// start serves a login server over the demo directory and a new SQLite
// database; each configure function may change its options.
func start(t *testing.T, newHTTP func(http.Handler) *httptest.Server, configure ...func(*options)) *env {
	t.Helper()
	dir := ldaptest.Start(t, ldaptest.DemoDirectory())
	store, err := sqlstore.Open(t.Context(), sqlstore.DriverSQLite, filepath.Join(t.TempDir(), "login.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	return &env{srv: serve(t, newHTTP, dir, store, configure...), store: store, dir: dir}
}

// serve starts a login server over dir and store.
func serve(t *testing.T, newHTTP func(http.Handler) *httptest.Server, dir *ldaptest.Server, store *sqlstore.Store, configure ...func(*options)) *httptest.Server {
	t.Helper()
	cfg, err := demo.Config(dir)
	require.NoError(t, err)
	cfg.SearchFilters = demo.ActiveOnly{Filters: cfg.SearchFilters} // as main does in demo mode
	cfg.Store = store
	auth, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { auth.Close() })
	o := options{Auth: auth, Store: store, Demo: newDemoPage(dir)}
	for _, f := range configure {
		f(&o)
	}
	srv := newHTTP(newServer(o))
	t.Cleanup(srv.Close)
	return srv
}

// client returns a browser-like client: a cookie jar, redirects not
// followed so each step can be checked.
func (e *env) client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := *e.srv.Client() // a copy: the server's own client is shared
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	return do(t, c, req)
}

// postForm posts as a browser does from the page itself.
func postForm(t *testing.T, c *http.Client, url string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return do(t, c, req)
}

func postJSON(t *testing.T, c *http.Client, url string, v any) (*http.Response, string) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(string(b)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	return do(t, c, req)
}

func sessionCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie || c.Name == secureSessionCookie {
			return c
		}
	}
	return nil
}

func credentials(user, password string) url.Values {
	return url.Values{"username": {user}, "password": {password}}
}

func TestLoginPage(t *testing.T) {
	e := start(t, httptest.NewServer)
	resp, body := get(t, e.client(t), e.srv.URL+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, body, `<form method="post" action="/login">`)
	assert.Contains(t, body, `name="password"`)
	assert.Contains(t, body, "Demo directory", "the demo accounts are shown without LDAP_AUTH_URL")
	assert.Contains(t, body, "alice-password")
	assert.Contains(t, body, "outside the login group", "bob's row says he cannot log in")
	assert.Contains(t, body, "inactive in the directory: refused", "mallory's row says she cannot log in")
	assert.NotContains(t, body, "<script", "no JavaScript")
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	assert.Nil(t, sessionCookieOf(resp))
}

// TestLoginLogout signs a demo user in through the HTML form and out again.
func TestLoginLogout(t *testing.T) {
	e := start(t, httptest.NewServer)
	c := e.client(t)

	resp, _ := postForm(t, c, e.srv.URL+"/login", credentials("alice", "alice-password"))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/", resp.Header.Get("Location"))
	cookie := sessionCookieOf(resp)
	require.NotNil(t, cookie, "a session cookie is set")
	assert.True(t, cookie.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, cookie.SameSite)
	assert.False(t, cookie.Secure, "plain HTTP: a Secure cookie would never come back")
	assert.Equal(t, "/", cookie.Path)
	assert.Len(t, cookie.Value, 43, "32 random bytes, base64url")

	// The page shows what the database holds: rename the group there, and
	// the page shows the new name.
	_, err := e.store.DB().ExecContext(t.Context(), `UPDATE ldap_groups SET name = 'Readers (from the database)'`)
	require.NoError(t, err)
	resp, body := get(t, c, e.srv.URL+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "Signed in as Alice Liddell")
	assert.Contains(t, body, "uid=alice,cn=staff,ou=users,dc=example,dc=com")
	assert.Contains(t, body, "alice@example.com", "mapped fields")
	assert.Contains(t, body, "Readers (from the database)", "synced groups read back from the database")
	assert.NotContains(t, body, "marvel", "alice is not in marvel")
	assert.NotContains(t, body, "Demo directory", "the demo accounts are for the login page")

	resp, _ = postForm(t, c, e.srv.URL+"/logout", nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	cleared := sessionCookieOf(resp)
	require.NotNil(t, cleared, "logout clears the cookie")
	assert.Negative(t, cleared.MaxAge)
	assert.Empty(t, cleared.Value)

	_, body = get(t, c, e.srv.URL+"/")
	assert.Contains(t, body, `action="/login"`, "signed out")

	// The old session ID no longer works even if a client kept it.
	stale := e.srv.Client()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/api/me", nil)
	require.NoError(t, err)
	req.AddCookie(cookie)
	resp, _ = do(t, stale, req)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// TestLoginRefused: a wrong password, an unknown user and a right password
// outside the login group get the same page (the page is no password
// oracle), with no cookie, and the password never comes back in the page.
func TestLoginRefused(t *testing.T) {
	e := start(t, httptest.NewServer)
	pages := map[string]string{}
	for _, tt := range []struct{ name, user, password string }{
		{"known user, wrong password", "alice", "Wrong-Pa55word"},
		{"unknown user", "nobody", "Wrong-Pa55word"},
		{"right password, outside the login group", "bob", "bob-password"},
		{"inactive account (excluded by the demo's filter)", "mallory", "mallory-password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := postForm(t, e.client(t), e.srv.URL+"/login", credentials(tt.user, tt.password))
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Nil(t, sessionCookieOf(resp), "no cookie")
			assert.Contains(t, body, `class="error invalid_credentials"`)
			assert.Contains(t, body, "Wrong username or password.")
			assert.Contains(t, body, `value="`+tt.user+`"`, "the username is kept in the form")
			form, _, _ := strings.Cut(body, `id="demo"`) // the demo table lists the demo passwords
			assert.NotContains(t, form, tt.password, "the password is never echoed")
			assert.NotContains(t, body, "ldapauth:", "no error text from the library")
			// The typed username is the only difference.
			pages[tt.name] = strings.ReplaceAll(body, `value="`+tt.user+`"`, `value="NAME"`)
		})
	}
	want := pages["known user, wrong password"]
	require.NotEmpty(t, want)
	for name, page := range pages {
		assert.Equal(t, want, page, "%s: the same page as a wrong password", name)
	}
	snap, err := storetest.Read(t.Context(), e.store)
	require.NoError(t, err)
	assert.Empty(t, snap.Users, "no refused user reaches the database")
}

// TestDetailedErrors: with the setting on, a right password outside the
// login group is told so.
func TestDetailedErrors(t *testing.T) {
	e := start(t, httptest.NewServer, func(o *options) { o.DetailedErrors = true })
	resp, body := postForm(t, e.client(t), e.srv.URL+"/login", credentials("bob", "bob-password"))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, body, `class="error not_permitted"`)
	assert.Contains(t, body, "not in the sign-in group")
	resp, body = postForm(t, e.client(t), e.srv.URL+"/login", credentials("alice", "wrong"))
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, body, "Wrong username or password.")
}

func TestDirectoryUnavailable(t *testing.T) {
	dir, err := ldaptest.NewServer(ldaptest.DemoDirectory())
	require.NoError(t, err)
	cfg, err := demo.Config(dir)
	require.NoError(t, err)
	dir.Close() // nothing listens there any more
	store, err := sqlstore.Open(t.Context(), sqlstore.DriverSQLite, filepath.Join(t.TempDir(), "login.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	cfg.Store = store
	auth, err := ldapauth.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(newServer(options{Auth: auth, Store: store}))
	t.Cleanup(srv.Close)

	c := srv.Client()
	resp, body := postForm(t, c, srv.URL+"/login", credentials("alice", "alice-password"))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, body, "The directory cannot be reached right now.")
	assert.Nil(t, sessionCookieOf(resp))

	resp, body = postJSON(t, c, srv.URL+"/api/login", map[string]string{"username": "alice", "password": "alice-password"})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.JSONEq(t, `{"error":"directory_unavailable","message":"The directory cannot be reached right now. Please try again in a few minutes."}`, body)
}

func TestAPI(t *testing.T) {
	e := start(t, httptest.NewServer)
	c := e.client(t)

	resp, body := postJSON(t, c, e.srv.URL+"/api/login", map[string]string{"username": "carol", "password": "carol-password"})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NotNil(t, sessionCookieOf(resp))
	var got struct{ User apiUser }
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	assert.Equal(t, "carol", got.User.Username)
	assert.Equal(t, "Carol", got.User.Fields["first_name"])
	assert.Equal(t, []string{"1"}, got.User.Organisations)
	assert.Equal(t, []ldapauth.Group{{DN: e.dir.GroupDN("marvel"), Name: "marvel"}}, got.User.Groups)

	resp, body = get(t, c, e.srv.URL+"/api/me")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `"username":"carol"`)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/api/logout", nil)
	require.NoError(t, err)
	resp, _ = do(t, c, req)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = get(t, c, e.srv.URL+"/api/me")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	for _, tt := range []struct {
		user, password string
		status         int
		code           string
	}{
		{"carol", "wrong", http.StatusUnauthorized, "invalid_credentials"},
		{"nobody", "wrong", http.StatusUnauthorized, "invalid_credentials"},
		{"bob", "bob-password", http.StatusUnauthorized, "invalid_credentials"},
		{"carol", "", http.StatusUnauthorized, "invalid_credentials"},
	} {
		resp, body := postJSON(t, c, e.srv.URL+"/api/login", map[string]string{"username": tt.user, "password": tt.password})
		assert.Equal(t, tt.status, resp.StatusCode, tt.user)
		var f failure
		require.NoError(t, json.Unmarshal([]byte(body), &f), body)
		assert.Equal(t, tt.code, f.Code)
		assert.NotEmpty(t, f.Message)
		assert.Nil(t, sessionCookieOf(resp))
	}

	req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/api/login",
		strings.NewReader(credentials("carol", "carol-password").Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = do(t, c, req)
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, "the API takes JSON only")
	assert.Nil(t, sessionCookieOf(resp))
}

// TestCrossOrigin: a form on another site cannot log someone in or out.
func TestCrossOrigin(t *testing.T) {
	e := start(t, httptest.NewServer)
	for _, path := range []string{"/login", "/logout", "/api/login"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+path,
			strings.NewReader(credentials("alice", "alice-password").Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, _ := do(t, e.client(t), req)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, path)
		assert.Nil(t, sessionCookieOf(resp), path)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	e := start(t, httptest.NewTLSServer)
	resp, _ := postForm(t, e.client(t), e.srv.URL+"/login", credentials("alice", "alice-password"))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	cookie := sessionCookieOf(resp)
	require.NotNil(t, cookie)
	assert.True(t, cookie.Secure, "served over TLS: the cookie is Secure")
	assert.True(t, cookie.HttpOnly)
}

// TestSessionEndsWhenUserRemoved: a user the database no longer holds (the
// sync job removed it) is signed out.
func TestSessionEndsWhenUserRemoved(t *testing.T) {
	e := start(t, httptest.NewServer)
	c := e.client(t)
	resp, _ := postForm(t, c, e.srv.URL+"/login", credentials("alice", "alice-password"))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.NoError(t, e.store.DeleteUser(t.Context(), "alice"))
	resp, body := get(t, c, e.srv.URL+"/")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `action="/login"`)
	resp, _ = get(t, c, e.srv.URL+"/api/me")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestHealth(t *testing.T) {
	e := start(t, httptest.NewServer)
	resp, body := get(t, e.client(t), e.srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"status":"ok"}`, body)

	require.NoError(t, e.store.Close())
	resp, _ = get(t, e.client(t), e.srv.URL+"/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

// TestConcurrentLogins: many people signing in at once each get their own
// session and their own groups.
func TestConcurrentLogins(t *testing.T) {
	e := start(t, httptest.NewServer)
	users := []string{"alice", "carol", "jürgen", "dave(ops"}
	var wg sync.WaitGroup
	for i := range 3 * len(users) {
		name := users[i%len(users)]
		wg.Go(func() {
			c := e.client(t)
			ctx := context.WithoutCancel(t.Context())
			password, _ := demo.Password(name)
			b, _ := json.Marshal(map[string]string{"username": name, "password": password})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/api/login", strings.NewReader(string(b)))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, name)
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/api/me", nil)
			resp, err = c.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			var got struct{ User apiUser }
			assert.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			assert.Equal(t, name, got.User.Username, fmt.Sprintf("each client sees its own user (%s)", name))
		})
	}
	wg.Wait()
	snap, err := storetest.Read(t.Context(), e.store)
	require.NoError(t, err)
	assert.ElementsMatch(t, users, snap.Users)
}

// Account states the directory reports only after a right password get
// their own message; a locked account (reported whatever the password) and
// a right password outside the login group read like a wrong password
// unless detailed errors are on. They all match ErrInvalidCredentials, so
// the order of the cases matters.
func TestClassifyAccountStates(t *testing.T) {
	loginErr := func(kind error, code string) error {
		return &ldapauth.LoginError{Kind: ldapauth.ErrInvalidCredentials, Username: "x",
			Err: &ldapauth.AccountError{Kind: kind, Code: code}}
	}
	tests := []struct {
		err                error
		code, detailedCode string
	}{
		{loginErr(ldapauth.ErrPasswordExpired, "532"), "password_expired", "password_expired"},
		{loginErr(ldapauth.ErrPasswordMustChange, "773"), "password_must_change", "password_must_change"},
		{loginErr(ldapauth.ErrPasswordMustChange, "changeAfterReset"), "password_must_change", "password_must_change"},
		{loginErr(ldapauth.ErrAccountDisabled, "533"), "account_disabled", "account_disabled"},
		{loginErr(ldapauth.ErrAccountExpired, "701"), "account_disabled", "account_disabled"},
		{loginErr(ldapauth.ErrLogonNotPermitted, "530"), "logon_not_permitted", "logon_not_permitted"},
		{loginErr(ldapauth.ErrAccountLocked, "775"), "invalid_credentials", "account_locked"},
		{loginErr(ldapauth.ErrAccountLocked, "accountLocked"), "invalid_credentials", "account_locked"},
		{&ldapauth.LoginError{Kind: ldapauth.ErrInvalidCredentials}, "invalid_credentials", "invalid_credentials"},
		{&ldapauth.LoginError{Kind: ldapauth.ErrUnknownUser}, "invalid_credentials", "invalid_credentials"},
		{&ldapauth.LoginError{Kind: ldapauth.ErrNotPermitted}, "invalid_credentials", "not_permitted"},
	}
	for _, tt := range tests {
		t.Run(tt.code+"/"+tt.detailedCode, func(t *testing.T) {
			assert.Equal(t, tt.code, classify(tt.err, false).Code)
			assert.Equal(t, tt.detailedCode, classify(tt.err, true).Code)
		})
	}
	assert.Equal(t, classify(&ldapauth.LoginError{Kind: ldapauth.ErrInvalidCredentials}, false),
		classify(&ldapauth.LoginError{Kind: ldapauth.ErrNotPermitted}, false), "status, code and message alike")
}
