package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/pgtest"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// clock is a settable time for the store, so that back-offs pass without
// sleeping.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

// loopback trusts the test client (127.0.0.1) as a proxy, so that each
// request can say which client it stands for in X-Forwarded-For.
func loopback(o *options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }

// loginAs posts the JSON login as the client at addr (through the trusted
// loopback proxy).
func loginAs(t *testing.T, c *http.Client, base, addr, user, password string) *http.Response {
	t.Helper()
	b, err := json.Marshal(map[string]string{"username": user, "password": password})
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/api/login", strings.NewReader(string(b)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	resp, _ := do(t, c, req)
	return resp
}

// counter returns the value of a counter with the given limit attribute
// ("" for none).
func counter(t *testing.T, r *sdkmetric.ManualReader, name, limit string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(t.Context(), &rm))
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value("limit")
				if v.AsString() == limit {
					total += dp.Value
				}
			}
		}
	}
	return total
}

// TestThrottleUsername: after three failed attempts on a username the
// fourth is refused with 429 and Retry-After, even with the right password
// (it never reaches the directory), from any new client; other usernames
// are not affected; after the lock the right password signs in and clears
// the count.
func TestThrottleUsername(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	clk := newClock()
	e := start(t, httptest.NewServer, loopback, func(o *options) {
		o.Store.SetClock(clk.now)
		o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	c := e.client(t)
	for range 5 {
		require.Equal(t, http.StatusUnauthorized, loginAs(t, c, e.srv.URL, "192.0.2.1", "alice", "").StatusCode)
	}
	n, err := e.store.Attempts(t.Context(), userKey("alice"), time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "an empty password never reaches the directory: not counted")
	for i, addr := range []string{"192.0.2.1", "192.0.2.2", "198.51.100.7"} { // an attacker spreads over addresses
		resp := loginAs(t, c, e.srv.URL, addr, "alice", "guess-"+addr)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "attempt %d", i+1)
	}
	for _, addr := range []string{"192.0.2.1", "203.0.113.9"} {
		resp := loginAs(t, c, e.srv.URL, addr, "alice", "alice-password")
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the right password is not even tried (%s)", addr)
		assert.Equal(t, "900", resp.Header.Get("Retry-After"), "15 minutes after the last failure")
		assert.Nil(t, sessionCookieOf(resp))
	}
	resp := loginAs(t, c, e.srv.URL, "192.0.2.1", "carol", "carol-password")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "other usernames sign in")

	// The HTML form says so too.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/login",
		strings.NewReader(credentials("alice", "alice-password").Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, body := do(t, e.client(t), req)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, body, "Too many failed sign-ins.")

	assert.EqualValues(t, 3, counter(t, reader, "loginserver.throttle.failures", ""))
	assert.EqualValues(t, 3, counter(t, reader, "loginserver.throttle.refused", limitUsername))

	clk.advance(15 * time.Minute)
	resp = loginAs(t, c, e.srv.URL, "203.0.113.9", "alice", "alice-password")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the lock is over")
	n, err = e.store.Attempts(t.Context(), userKey("alice"), time.Hour)
	require.NoError(t, err)
	assert.Zero(t, n, "a sign-in clears the count")
}

// TestThrottleKnownClient: an attacker who used up alice's attempts does not
// lock her out of the client she signed in from before: it keeps one
// attempt more, and her right password there clears the count.
func TestThrottleKnownClient(t *testing.T) {
	e := start(t, httptest.NewServer, loopback)
	c := e.client(t)
	const home, attacker = "192.0.2.10", "198.51.100.66"
	require.Equal(t, http.StatusOK, loginAs(t, c, e.srv.URL, home, "alice", "alice-password").StatusCode)
	for range 3 {
		require.Equal(t, http.StatusUnauthorized, loginAs(t, c, e.srv.URL, attacker, "alice", "guess").StatusCode)
	}
	require.Equal(t, http.StatusTooManyRequests, loginAs(t, c, e.srv.URL, attacker, "alice", "guess").StatusCode)
	require.Equal(t, http.StatusTooManyRequests, loginAs(t, c, e.srv.URL, "203.0.113.1", "alice", "alice-password").StatusCode)

	require.Equal(t, http.StatusOK, loginAs(t, c, e.srv.URL, home, "alice", "alice-password").StatusCode,
		"her own client signs in")
	require.Equal(t, http.StatusUnauthorized, loginAs(t, c, e.srv.URL, attacker, "alice", "guess").StatusCode,
		"the count starts again: the directory forgot its failures on her sign-in too")

	// The known client's margin is one attempt, so the directory never
	// sees a fourth failure.
	e2 := start(t, httptest.NewServer, loopback)
	c2 := e2.client(t)
	require.Equal(t, http.StatusOK, loginAs(t, c2, e2.srv.URL, home, "alice", "alice-password").StatusCode)
	for range 3 {
		loginAs(t, c2, e2.srv.URL, attacker, "alice", "guess")
	}
	require.Equal(t, http.StatusUnauthorized, loginAs(t, c2, e2.srv.URL, home, "alice", "typo").StatusCode)
	require.Equal(t, http.StatusTooManyRequests, loginAs(t, c2, e2.srv.URL, home, "alice", "alice-password").StatusCode)
}

// TestThrottleClient: one address trying many usernames is slowed down,
// with a back-off that doubles; other addresses are not.
func TestThrottleClient(t *testing.T) {
	clk := newClock()
	e := start(t, httptest.NewServer, loopback, func(o *options) {
		o.Store.SetClock(clk.now)
		o.Throttle = throttleConfig{ClientLimit: 4}
	})
	c := e.client(t)
	const sprayer = "198.51.100.5"
	for _, user := range []string{"u1", "u2", "u3", "u4"} {
		require.Equal(t, http.StatusUnauthorized, loginAs(t, c, e.srv.URL, sprayer, user, "Winter2026!").StatusCode)
	}
	resp := loginAs(t, c, e.srv.URL, sprayer, "u5", "Winter2026!")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "60", resp.Header.Get("Retry-After"))
	assert.Equal(t, http.StatusOK, loginAs(t, c, e.srv.URL, "192.0.2.1", "carol", "carol-password").StatusCode)

	clk.advance(time.Minute)
	require.Equal(t, http.StatusUnauthorized, loginAs(t, c, e.srv.URL, sprayer, "u5", "Winter2026!").StatusCode)
	resp = loginAs(t, c, e.srv.URL, sprayer, "u6", "Winter2026!")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "120", resp.Header.Get("Retry-After"), "the back-off doubles")

	// IPv6 clients are counted by their /64.
	for i, addr := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"} {
		require.Equal(t, http.StatusUnauthorized, loginAs(t, c, e.srv.URL, addr, "v"+addr, "x").StatusCode, i)
	}
	assert.Equal(t, http.StatusTooManyRequests, loginAs(t, c, e.srv.URL, "2001:db8::ffff", "v9", "x").StatusCode)
}

// TestClientAddr: X-Forwarded-For is believed only from a trusted proxy,
// read from the right, skipping the trusted hops.
func TestClientAddr(t *testing.T) {
	s := &server{options: options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}}}
	for _, tt := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"203.0.113.5:4000", nil, "203.0.113.5"},
		{"203.0.113.5:4000", []string{"192.0.2.1"}, "203.0.113.5"}, // not a proxy of ours: ignored
		{"10.1.2.3:4000", []string{"192.0.2.1"}, "192.0.2.1"},
		{"10.1.2.3:4000", []string{"6.6.6.6, 192.0.2.1, 10.9.9.9"}, "192.0.2.1"}, // the spoofed left entry is not read
		{"10.1.2.3:4000", []string{"6.6.6.6", "192.0.2.1"}, "192.0.2.1"},
		{"10.1.2.3:4000", []string{"garbage, 10.0.0.2"}, "10.0.0.2"},
		{"10.1.2.3:4000", nil, "10.1.2.3"},
		{"[2001:db8::1]:4000", nil, "2001:db8::/64"},
		{"[::ffff:127.0.0.1]:4000", []string{"192.0.2.9"}, "192.0.2.9"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		assert.Equal(t, tt.want, s.clientAddr(r), "%s %v", tt.remote, tt.xff)
	}
}

// TestSecureCookie: the session cookie is Secure with the __Host- prefix
// when the public URL is https, or a trusted proxy says the request came
// over https; an untrusted X-Forwarded-Proto changes nothing.
func TestSecureCookie(t *testing.T) {
	public, err := url.Parse("https://login.example.com")
	require.NoError(t, err)
	for _, tt := range []struct {
		name   string
		opts   func(*options)
		proto  string
		secure bool
	}{
		{"https public URL", func(o *options) { o.PublicURL = public }, "", true},
		{"trusted proxy, X-Forwarded-Proto https", loopback, "https", true},
		{"trusted proxy, X-Forwarded-Proto http", loopback, "http", false},
		{"untrusted X-Forwarded-Proto", func(*options) {}, "https", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, httptest.NewServer, tt.opts)
			header := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"same-origin"}}
			if tt.proto != "" {
				header.Set("X-Forwarded-Proto", tt.proto)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/login",
				strings.NewReader(credentials("alice", "alice-password").Encode()))
			require.NoError(t, err)
			req.Header = header.Clone()
			resp, _ := do(t, e.client(t), req)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			cookie := sessionCookieOf(resp)
			require.NotNil(t, cookie)
			assert.Equal(t, tt.secure, cookie.Secure)
			if tt.secure {
				assert.Equal(t, secureSessionCookie, cookie.Name)
			} else {
				assert.Equal(t, sessionCookie, cookie.Name)
			}
			assert.Equal(t, "/", cookie.Path)
			assert.Empty(t, cookie.Domain, "__Host- cookies have no Domain")

			// The session reads back under that name.
			req, err = http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/api/me", nil)
			require.NoError(t, err)
			req.Header = header.Clone()
			req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
			resp, _ = do(t, e.srv.Client(), req)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// TestLoginEndsPreviousSession: signing in again from the same browser
// ends the session it had (a fresh ID for every login), and the sessions
// of a user are capped.
func TestLoginEndsPreviousSession(t *testing.T) {
	e := start(t, httptest.NewServer, func(o *options) { o.MaxSessions = 2 })
	c := e.client(t)
	resp, _ := postForm(t, c, e.srv.URL+"/login", credentials("alice", "alice-password"))
	first := sessionCookieOf(resp)
	require.NotNil(t, first)
	resp, _ = postForm(t, c, e.srv.URL+"/login", credentials("alice", "alice-password"))
	second := sessionCookieOf(resp)
	require.NotNil(t, second)
	assert.NotEqual(t, first.Value, second.Value)
	_, err := e.store.SessionUser(t.Context(), first.Value)
	require.ErrorIs(t, err, sqlstore.ErrNoSession, "the browser's earlier session ended")
	_, err = e.store.SessionUser(t.Context(), second.Value)
	require.NoError(t, err)

	for range 3 { // three other browsers
		resp, _ := postForm(t, e.client(t), e.srv.URL+"/login", credentials("alice", "alice-password"))
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	}
	n, err := e.store.Sessions(t.Context(), "alice")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "capped")
}

// TestLogsMaskUsername: a name the directory did not confirm (perhaps a
// password typed into the username field) is logged masked; a confirmed
// one in full, sanitised and bounded; never the password.
func TestLogsMaskUsername(t *testing.T) {
	logs := &lockedBuffer{}
	e := start(t, httptest.NewServer, func(o *options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	c := e.client(t)
	postForm(t, c, e.srv.URL+"/login", credentials("Sup3r-Secret-Passw0rd", "alice"))
	postForm(t, c, e.srv.URL+"/login", credentials("alice", "wrong-password-x"))
	postForm(t, c, e.srv.URL+"/login", credentials("bob", "bob-password"))
	out := logs.String()
	assert.NotContains(t, out, "Sup3r-Secret", "an unconfirmed name is never logged in full")
	assert.Contains(t, out, `"username":{"prefix":"Su","length":21,"sha256_prefix":`)
	assert.NotContains(t, out, "wrong-password-x")
	assert.NotContains(t, out, "bob-password")
	assert.Contains(t, out, `"username":"bob"`, "the directory confirmed bob: logged in full")
	assert.Contains(t, out, `"reason":"not permitted (outside the login group)"`, "the real reason is logged")

	long := logName(strings.Repeat("x", 100)+"\x1b[31m\n", true).Value.String()
	assert.Equal(t, strings.Repeat("x", 64)+"…", long)
	assert.Equal(t, "a??b", logName("a\x1b\nb", true).Value.String())
}

// TestReplicas: two login servers on one database act as one: a session
// made on one is valid on the other, a logout on either ends it on both,
// and failed attempts on both count against one limit.
func TestReplicas(t *testing.T) {
	for _, b := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"SQLite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "shared.db") }},
		{"PostgreSQL", func(t *testing.T) string { return pgtest.Start(t).NewDatabase(t) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			dir := ldaptest.Start(t, ldaptest.DemoDirectory())
			dsn := b.dsn(t)
			var servers [2]*httptest.Server
			for i := range servers {
				store, err := sqlstore.OpenDSN(t.Context(), dsn) // each replica opens its own pool
				require.NoError(t, err)
				t.Cleanup(func() { store.Close() })
				servers[i] = serve(t, httptest.NewServer, dir, store, loopback)
			}
			a, b := servers[0], servers[1]
			me := func(srv *httptest.Server, cookie *http.Cookie) int {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/me", nil)
				require.NoError(t, err)
				req.AddCookie(cookie)
				resp, _ := do(t, srv.Client(), req)
				return resp.StatusCode
			}

			resp := loginAs(t, a.Client(), a.URL, "", "alice", "alice-password")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			cookie := sessionCookieOf(resp)
			require.NotNil(t, cookie)
			assert.Equal(t, http.StatusOK, me(a, cookie))
			assert.Equal(t, http.StatusOK, me(b, cookie), "a session made on one replica is valid on the other")

			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+"/api/logout", nil)
			require.NoError(t, err)
			req.AddCookie(cookie)
			resp, _ = do(t, b.Client(), req)
			require.Equal(t, http.StatusNoContent, resp.StatusCode)
			assert.Equal(t, http.StatusUnauthorized, me(b, cookie))
			assert.Equal(t, http.StatusUnauthorized, me(a, cookie), "a logout on one replica ends it on both")

			// Failed attempts alternate between the replicas, as a load
			// balancer would send them; the limit counts them all.
			for i, srv := range []*httptest.Server{a, b, a} {
				require.Equal(t, http.StatusUnauthorized, loginAs(t, srv.Client(), srv.URL, "198.51.100.1", "carol", "guess").StatusCode, i)
			}
			assert.Equal(t, http.StatusTooManyRequests, loginAs(t, b.Client(), b.URL, "198.51.100.2", "carol", "carol-password").StatusCode)
			assert.Equal(t, http.StatusTooManyRequests, loginAs(t, a.Client(), a.URL, "198.51.100.3", "carol", "carol-password").StatusCode)
		})
	}
}

// TestSweep: the sweeper deletes expired sessions without any login.
func TestSweep(t *testing.T) {
	clk := newClock()
	e := start(t, httptest.NewServer, func(o *options) { o.Store.SetClock(clk.now); o.SessionTTL = time.Hour })
	resp, _ := postForm(t, e.client(t), e.srv.URL+"/login", credentials("alice", "alice-password"))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	clk.advance(2 * time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sweep(ctx, e.store, throttleConfig{}, time.Hour, func(err error) { t.Error(err) })
	}()
	require.Eventually(t, func() bool {
		var n int
		return e.store.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM login_sessions`).Scan(&n) == nil && n == 0
	}, 10*time.Second, 10*time.Millisecond, "the sweep runs at once, then every interval")
	cancel()
	<-done
}
