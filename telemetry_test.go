package ldapauth_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// deadURL is an ldap:// URL on 127.0.0.1 where nothing listens: a dial is
// refused.
func deadURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "ldap://" + addr
}

func TestStatsPoolsServersAndLogins(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	dead := deadURL(t)
	a, _, _ := authFor(t, srv, map[string]string{
		"LDAP_AUTH_URL":                   dead + " " + srv.URL(),
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                srv.GroupDN("ldapusers"),
	})
	ctx := context.Background()
	st := a.Stats()
	assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8}, st.Users, "nothing dialled yet")
	require.Len(t, st.Servers, 2)
	assert.True(t, st.Servers[0].Up && st.Servers[1].Up)

	before := time.Now()
	_, err := a.Authenticate(ctx, "alice", "alice-password")
	require.NoError(t, err)
	_, err = a.Authenticate(ctx, "bob", "bob-password")
	require.ErrorIs(t, err, ldapauth.ErrNotPermitted)
	_, err = a.Authenticate(ctx, "alice", "wrong")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	_, err = a.Authenticate(ctx, "alice", "")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	st = a.Stats()
	assert.Equal(t, map[string]uint64{"success": 1, "canceled": 0, "account_state": 0, "unknown_user": 0, "not_permitted": 1,
		"invalid_credentials": 2, "unavailable": 0, "config_error": 0, "error": 0}, st.Logins, "every outcome named, as the metrics name them")
	assert.EqualValues(t, 4, total(st.Logins))
	assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8, Open: 1, Idle: 1, Dials: 1}, st.Users,
		"one connection, dialled once and reused")
	down, up := st.Servers[0], st.Servers[1]
	assert.Equal(t, dead, down.URL)
	assert.False(t, down.Up)
	assert.Equal(t, 1, down.Failures)
	assert.True(t, down.DownUntil.After(before), "in back-off: %v", down.DownUntil)
	assert.Equal(t, "refused", down.LastError)
	assert.False(t, down.LastErrorAt.Before(before))
	assert.Equal(t, ldapauth.ServerStats{URL: srv.URL(), Up: true}, up)
	assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8}, st.Service, "no service account: the service pool stays empty")

	// A cancelled login takes the pooled connection and closes it.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = a.Authenticate(cancelled, "alice", "alice-password")
	require.ErrorIs(t, err, context.Canceled)
	st = a.Stats()
	assert.EqualValues(t, 1, st.Logins["canceled"])
	assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8, Dials: 1}, st.Users, "broken connections are closed, never pooled")
	_, err = a.Authenticate(ctx, "alice", "alice-password")
	require.NoError(t, err)

	// The server drops the pooled connection: the next login finds it stale
	// in the pool, or loses its bind on it and runs it again; either way it
	// dials once more.
	srv.CloseClientConnections()
	_, err = a.Authenticate(ctx, "alice", "alice-password")
	require.NoError(t, err)
	st = a.Stats()
	assert.EqualValues(t, 3, st.Users.Dials)
	assert.EqualValues(t, 1, st.Users.StaleClosed+st.Users.Retries, "%+v", st.Users)
	assert.Equal(t, 1, st.Users.Open)

	t.Run("idle too long", func(t *testing.T) {
		a, _, _ := authFor(t, srv, nil)
		var now atomic.Int64
		now.Store(time.Now().UnixNano())
		ldapauth.SetClock(a, func() time.Time { return time.Unix(0, now.Load()) })
		_, err := a.Authenticate(ctx, "alice", "alice-password")
		require.NoError(t, err)
		now.Add(int64((180 * time.Second) + time.Second))
		_, err = a.Authenticate(ctx, "alice", "alice-password")
		require.NoError(t, err)
		assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8, Open: 1, Idle: 1, Dials: 2, StaleClosed: 1}, a.Stats().Users)
	})

	t.Run("every server down", func(t *testing.T) {
		a, _, _ := authFor(t, srv, map[string]string{"LDAP_AUTH_URL": dead})
		_, err := a.Authenticate(ctx, "alice", "alice-password")
		require.ErrorIs(t, err, ldapauth.ErrUnavailable)
		st := a.Stats()
		assert.EqualValues(t, 1, st.Logins["unavailable"])
		assert.EqualValues(t, 1, total(st.Logins))
		assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8, DialFailures: 1}, st.Users)
		assert.Equal(t, "refused", st.Servers[0].LastError)
	})

	t.Run("service pool", func(t *testing.T) {
		a, _, _ := authFor(t, srv, map[string]string{
			"LDAP_AUTH_CONNECTION_USERNAME": srv.UserDN("svc"),
			"LDAP_AUTH_CONNECTION_PASSWORD": "svc-password",
		})
		for range 3 {
			_, err := a.Authenticate(ctx, "alice", "alice-password")
			require.NoError(t, err)
		}
		st := a.Stats()
		assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8, Open: 1, Idle: 1, Dials: 1}, st.Service)
		assert.Equal(t, ldapauth.PoolStats{MaxIdle: 8, Open: 1, Idle: 1, Dials: 1}, st.Users)
		assert.EqualValues(t, 3, st.Logins["success"])
	})
}

// Stats is read on every scrape, while logins run.
func BenchmarkStats(b *testing.B) {
	srv := ldaptest.Start(b, ldaptest.DemoDirectory())
	a, _, _ := authFor(b, srv, map[string]string{"LDAP_AUTH_URL": deadURL(b) + " " + srv.URL()})
	_, err := a.Authenticate(context.Background(), "alice", "alice-password")
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Stats()
	}
}

// telemetryAuth returns an Authenticator for vars whose metrics go to a
// ManualReader and whose spans go to a SpanRecorder.
// loginVars are syncVars for a deployment without a service account: the
// user binds by the formatter's DN under ldaptest's users base (which proves
// the identity without a round trip) and searches as herself, so a login is
// one connection, one bind and one search.
func loginVars(srv *ldaptest.Server, extra map[string]string) map[string]string {
	vars := syncVars(srv, nil)
	vars["LDAP_AUTH_SEARCH_BASE"] = srv.Env()["LDAP_AUTH_SEARCH_BASE"]
	for _, k := range []string{"LDAP_AUTH_SEARCH_THEN_BIND", "LDAP_AUTH_CONNECTION_USERNAME", "LDAP_AUTH_CONNECTION_PASSWORD"} {
		delete(vars, k)
	}
	for k, v := range extra {
		vars[k] = v
	}
	return vars
}

func telemetryAuth(t *testing.T, vars map[string]string, edit ...func(*ldapauth.Config)) (*ldapauth.Authenticator, *sdkmetric.ManualReader, *tracetest.SpanRecorder) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	edit = append(edit, func(c *ldapauth.Config) { c.MeterProvider, c.TracerProvider = mp, tp })
	return syncAuth(t, vars, ldapauth.NewMemStore(), edit...), reader, rec
}

// point is one data point of a collected metric: its attributes and its
// value (a sum's or gauge's value, a histogram's count).
type point struct {
	attrs map[string]string
	value int64
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string][]point{}
	attrs := func(s attribute.Set) map[string]string {
		m := map[string]string{}
		for _, kv := range s.ToSlice() {
			m[string(kv.Key)] = kv.Value.Emit()
		}
		return m
	}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, "github.com/go-ldapauth/ldapauth", sm.Scope.Name)
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), p.Value})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), p.Value})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = append(out[m.Name], point{attrs(p.Attributes), int64(p.Count)})
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// value sums the points of name whose attributes include want.
func value(points map[string][]point, name string, want map[string]string) (int64, bool) {
	var sum int64
	found := false
next:
	for _, p := range points[name] {
		for k, v := range want {
			if p.attrs[k] != v {
				continue next
			}
		}
		sum += p.value
		found = true
	}
	return sum, found
}

func TestTelemetryLoginMetrics(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, reader, _ := telemetryAuth(t, loginVars(srv, nil))
	ctx := context.Background()
	for range 2 {
		_, err := a.Authenticate(ctx, "alice", "alice-password")
		require.NoError(t, err)
	}
	_, err := a.Authenticate(ctx, "alice", "wrong")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)

	m := collect(t, reader)
	get := func(name string, attrs map[string]string) int64 {
		t.Helper()
		v, ok := value(m, name, attrs)
		require.True(t, ok, "%s%v: no data point in %v", name, attrs, m[name])
		return v
	}
	assert.EqualValues(t, 2, get("ldapauth.logins", map[string]string{"ldapauth.login.outcome": "success"}))
	assert.EqualValues(t, 1, get("ldapauth.logins", map[string]string{"ldapauth.login.outcome": "invalid_credentials"}))
	assert.EqualValues(t, 2, get("ldapauth.login.duration", map[string]string{"ldapauth.login.outcome": "success"}), "histogram count")

	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	server := map[string]string{"db.system.name": "ldap", "server.address": "127.0.0.1", "server.port": u.Port(), "ldapauth.server.url": srv.URL()}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range server {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	assert.EqualValues(t, 1, get("db.client.operation.duration", with(map[string]string{"db.operation.name": "dial"})))
	ops := m["db.client.operation.duration"]
	var goodBinds, badBinds, searches int64
	for _, p := range ops {
		switch {
		case p.attrs["db.operation.name"] == "bind" && p.attrs["error.type"] == "":
			goodBinds += p.value
		case p.attrs["db.operation.name"] == "bind" && p.attrs["error.type"] == "invalid_credentials":
			badBinds += p.value
		case p.attrs["db.operation.name"] == "search":
			searches += p.value
		}
	}
	assert.EqualValues(t, 2, goodBinds)
	assert.EqualValues(t, 1, badBinds, "a refused bind is timed with its error.type")
	assert.GreaterOrEqual(t, searches, int64(2))

	users := map[string]string{"db.client.connection.pool.name": "ldapauth.users"}
	assert.EqualValues(t, 1, get("db.client.connection.count", map[string]string{"db.client.connection.pool.name": "ldapauth.users", "db.client.connection.state": "idle"}))
	assert.EqualValues(t, 0, get("db.client.connection.count", map[string]string{"db.client.connection.pool.name": "ldapauth.users", "db.client.connection.state": "used"}))
	assert.EqualValues(t, 8, get("db.client.connection.idle.max", users))
	assert.EqualValues(t, 1, get("ldapauth.pool.dials", users))
	assert.EqualValues(t, 0, get("ldapauth.pool.dial_failures", users))
	assert.EqualValues(t, 1, get("ldapauth.server.up", map[string]string{"ldapauth.server.url": srv.URL()}))

	// Close unregisters the pool callbacks: no more pool gauges.
	require.NoError(t, a.Close())
	m = collect(t, reader)
	assert.Empty(t, m["db.client.connection.count"])
}

func TestTelemetrySyncMetrics(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Generate(40, 4))
	vars := syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": srv.GroupDN("group0001"), "LDAP_SYNC_PAGE_SIZE": "15"})
	a, reader, rec := telemetryAuth(t, vars)
	ctx := context.Background()
	rep, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
	require.NoError(t, err)
	require.Positive(t, rep.Pages)

	m := collect(t, reader)
	get := func(name string, attrs map[string]string) int64 {
		t.Helper()
		v, ok := value(m, name, attrs)
		require.True(t, ok, "%s%v: no data point in %v", name, attrs, m[name])
		return v
	}
	assert.EqualValues(t, 1, get("ldapauth.sync.runs", map[string]string{"ldapauth.sync.outcome": "applied"}))
	assert.EqualValues(t, 1, get("ldapauth.sync.duration", map[string]string{"ldapauth.sync.outcome": "applied"}))
	assert.EqualValues(t, len(rep.UsersCreated), get("ldapauth.sync.changes", map[string]string{"ldapauth.sync.change": "users_created"}))
	assert.EqualValues(t, len(rep.MembershipsAdded), get("ldapauth.sync.changes", map[string]string{"ldapauth.sync.change": "memberships_added"}))
	assert.EqualValues(t, 41, get("ldapauth.sync.users", map[string]string{"ldapauth.sync.source": "directory"}))
	assert.EqualValues(t, rep.Pages, get("ldapauth.sync.pages", nil))

	// The sync's trace: its pages are searches under the sync's span.
	root := onlySpan(t, rec.Ended(), "ldapauth.sync")
	assert.Equal(t, map[string]string{
		"ldapauth.sync.outcome": "applied", "ldapauth.sync.guard": "passed", "ldapauth.sync.pages": strconv.Itoa(rep.Pages),
		"ldapauth.sync.directory_users": "41", "ldapauth.sync.store_users": "0",
		"ldapauth.sync.changes": strconv.Itoa(rep.Changes()), "ldapauth.sync.applied": "true",
		"ldapauth.sync.dry_run": "false", "ldapauth.sync.force": "false", "ldapauth.sync.create_users": "true",
	}, spanAttrs(root))
	children := childrenOf(rec.Ended(), root)
	assert.Equal(t, 1, count(children, "ldap.dial"))
	assert.Equal(t, 1, count(children, "ldap.bind"))
	assert.GreaterOrEqual(t, count(children, "ldap.search"), rep.Pages, "one search per page at least")

	// Ten users gone: the guard refuses, and says so.
	d := ldaptest.Generate(40, 4)
	var gone []string
	for i := range 10 {
		gone = append(gone, d.Users[i].Name)
	}
	dropUsers(&d, gone...)
	require.NoError(t, srv.SetDirectory(d))
	rec.Reset()
	_, err = a.Sync(ctx, ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrRemovalGuard)
	refused := onlySpan(t, rec.Ended(), "ldapauth.sync")
	assert.Equal(t, "refused", spanAttrs(refused)["ldapauth.sync.guard"])
	assert.Equal(t, "false", spanAttrs(refused)["ldapauth.sync.applied"])
	m = collect(t, reader)
	assert.EqualValues(t, 1, get("ldapauth.sync.runs", map[string]string{"ldapauth.sync.outcome": "refused"}))
	assert.EqualValues(t, len(rep.UsersCreated), get("ldapauth.sync.changes", map[string]string{"ldapauth.sync.change": "users_created"}),
		"a refused plan writes nothing and counts no change")
	_, removed := value(m, "ldapauth.sync.changes", map[string]string{"ldapauth.sync.change": "users_removed"})
	assert.False(t, removed)

	t.Run("aborted", func(t *testing.T) {
		bad := syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": srv.GroupDN("group0001"), "LDAP_SYNC_USER_PASSWORD": "wrong"})
		a, reader, rec := telemetryAuth(t, bad)
		_, err := a.Sync(ctx, ldapauth.SyncOptions{})
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
		root := onlySpan(t, rec.Ended(), "ldapauth.sync")
		assert.Equal(t, codes.Error, root.Status().Code)
		assert.Equal(t, "aborted", root.Status().Description, "the outcome, not the message naming the account")
		assert.Equal(t, "aborted", spanAttrs(root)["ldapauth.sync.outcome"])
		_, planned := spanAttrs(root)["ldapauth.sync.guard"]
		assert.False(t, planned, "no plan, no guard decision")
		v, ok := value(collect(t, reader), "ldapauth.sync.runs", map[string]string{"ldapauth.sync.outcome": "aborted"})
		assert.True(t, ok)
		assert.EqualValues(t, 1, v)
	})

	rec.Reset()
	_, err = a.Sync(ctx, ldapauth.SyncOptions{Force: true})
	require.NoError(t, err)
	assert.Equal(t, "forced", spanAttrs(onlySpan(t, rec.Ended(), "ldapauth.sync"))["ldapauth.sync.guard"])
	m = collect(t, reader)
	assert.EqualValues(t, 10, get("ldapauth.sync.changes", map[string]string{"ldapauth.sync.change": "users_removed"}))
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func onlySpan(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %s", name)
	return found[0]
}

// childrenOf returns the spans below root, at any depth.
func childrenOf(spans []sdktrace.ReadOnlySpan, root sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	below := map[trace.SpanID]bool{root.SpanContext().SpanID(): true}
	var out []sdktrace.ReadOnlySpan
	for changed := true; changed; {
		changed = false
		for _, s := range spans {
			id := s.SpanContext().SpanID()
			if !below[id] && below[s.Parent().SpanID()] {
				below[id] = true
				out = append(out, s)
				changed = true
			}
		}
	}
	return out
}

func count(spans []sdktrace.ReadOnlySpan, name string) int {
	n := 0
	for _, s := range spans {
		if s.Name() == name {
			n++
		}
	}
	return n
}

func TestTelemetryLoginSpans(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, srv.CACertPEM(), 0o644))
	vars := loginVars(srv, map[string]string{"LDAP_AUTH_USE_TLS": "true", "LDAP_AUTH_TLS_CA_FILE": ca})
	ctx := context.Background()

	t.Run("username left out by default", func(t *testing.T) {
		a, _, rec := telemetryAuth(t, vars)
		_, err := a.Authenticate(ctx, "alice", "alice-password")
		require.NoError(t, err)
		spans := rec.Ended()
		root := onlySpan(t, spans, "ldapauth.authenticate")
		assert.False(t, root.Parent().IsValid(), "a root span")
		assert.Equal(t, map[string]string{"ldapauth.login.outcome": "success"}, spanAttrs(root))
		assert.Equal(t, codes.Unset, root.Status().Code)
		children := childrenOf(spans, root)
		require.Len(t, children, len(spans)-1, "every span belongs to the login")
		for _, name := range []string{"ldap.dial", "ldap.starttls", "ldap.bind", "ldap.search", "ldapauth.store.save_user", "ldapauth.sync_relations"} {
			assert.GreaterOrEqual(t, count(children, name), 1, name)
		}
		dial := onlySpan(t, spans, "ldap.dial")
		assert.Equal(t, dial.SpanContext().SpanID(), onlySpan(t, spans, "ldap.starttls").Parent().SpanID(), "StartTLS is part of the dial")
		bind := onlySpan(t, spans, "ldap.bind")
		assert.Equal(t, trace.SpanKindClient, bind.SpanKind())
		u, _ := url.Parse(srv.URL())
		assert.Equal(t, map[string]string{"server.address": "127.0.0.1", "server.port": u.Port(), "ldapauth.server.url": srv.URL()}, spanAttrs(bind))

		rec.Reset()
		_, err = a.Authenticate(ctx, "alice", "wrong")
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		spans = rec.Ended()
		root = onlySpan(t, spans, "ldapauth.authenticate")
		assert.Equal(t, "invalid_credentials", spanAttrs(root)["ldapauth.login.outcome"])
		assert.Equal(t, codes.Unset, root.Status().Code, "a wrong password is the login's answer, not a fault")
		bind = onlySpan(t, spans, "ldap.bind")
		assert.Equal(t, "invalid_credentials", spanAttrs(bind)["error.type"])
		assert.Equal(t, codes.Error, bind.Status().Code)
		assert.Zero(t, count(spans, "ldap.dial"), "the pooled connection")
		for _, s := range spans {
			assert.NotContains(t, s.Status().Description, "alice", s.Name())
			for k, v := range spanAttrs(s) {
				assert.NotContains(t, v, "alice", "%s: %s", s.Name(), k)
			}
			assert.Empty(t, s.Events(), s.Name())
		}
	})

	t.Run("username when asked", func(t *testing.T) {
		a, _, rec := telemetryAuth(t, vars, func(c *ldapauth.Config) { c.TraceUsernames = true })
		_, err := a.Authenticate(ctx, "alice", "alice-password")
		require.NoError(t, err)
		assert.Equal(t, "alice", spanAttrs(onlySpan(t, rec.Ended(), "ldapauth.authenticate"))["user.name"])
	})

	t.Run("unavailable is an error", func(t *testing.T) {
		a, _, rec := telemetryAuth(t, loginVars(srv, map[string]string{"LDAP_AUTH_URL": deadURL(t)}))
		_, err := a.Authenticate(ctx, "alice", "alice-password")
		require.ErrorIs(t, err, ldapauth.ErrUnavailable)
		root := onlySpan(t, rec.Ended(), "ldapauth.authenticate")
		assert.Equal(t, codes.Error, root.Status().Code)
		assert.Equal(t, "unavailable", spanAttrs(root)["ldapauth.login.outcome"])
		assert.Equal(t, "refused", spanAttrs(onlySpan(t, rec.Ended(), "ldap.dial"))["error.type"])
	})
}

// The library speaks to OpenTelemetry through its API only: no SDK, no
// exporter, no Prometheus client among the packages it imports.
func TestLibraryImportsNoExporter(t *testing.T) {
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command lists the imports")
	out, err := exec.Command(goTool, "list", "-deps", "github.com/go-ldapauth/ldapauth").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "go.opentelemetry.io/otel/metric")
	for _, d := range deps {
		assert.False(t, strings.HasPrefix(d, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(d, "go.opentelemetry.io/otel/exporters") ||
			strings.HasPrefix(d, "github.com/prometheus/"), "ldapauth imports %s", d)
	}
}

// Stats is read while logins run (the race detector watches), and every
// snapshot adds up.
func TestStatsDuringLogins(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, _, _ := authFor(t, srv, nil)
	ctx := context.Background()
	done := make(chan struct{})
	read := make(chan int)
	go func() {
		n := 0
		defer func() { read <- n }()
		for {
			select {
			case <-done:
				return
			default:
			}
			st := a.Stats()
			if st.Users.Open != st.Users.Idle+st.Users.InUse || st.Users.InUse < 0 || st.Users.Idle > st.Users.MaxIdle {
				t.Errorf("inconsistent snapshot %+v", st.Users)
				return
			}
			n++
		}
	}()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := a.Authenticate(ctx, "alice", "alice-password"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	assert.Positive(t, <-read)
	st := a.Stats()
	assert.EqualValues(t, 160, st.Logins["success"])
	assert.Zero(t, st.Users.InUse, "every connection back in the pool or closed")
	assert.Equal(t, st.Users.Idle, st.Users.Open)
	assert.LessOrEqual(t, st.Users.Open, 8)
	assert.GreaterOrEqual(t, st.Users.Dials, uint64(st.Users.Open))
}

// total is the number of logins stats counted.
func total(logins map[string]uint64) uint64 {
	var n uint64
	for _, c := range logins {
		n += c
	}
	return n
}

// SyncChanges (and WatchChanges, which runs it) records the sync's metrics
// and span, once per run, with the change-driven mode: here GLAuth offers
// no content synchronisation, so the run is the full sync it falls back
// to, counted once, not twice.
func TestTelemetrySyncChangesMetrics(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Generate(20, 2))
	vars := syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": srv.GroupDN("group0001")})
	a, reader, rec := telemetryAuth(t, vars)
	rep, err := a.SyncChanges(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
	require.NoError(t, err)
	require.Equal(t, "full sync", rep.ChangeSync.Mode)

	m := collect(t, reader)
	v, ok := value(m, "ldapauth.sync.runs", map[string]string{"ldapauth.sync.outcome": "applied", "ldapauth.sync.mode": "full sync"})
	require.True(t, ok, "%v", m["ldapauth.sync.runs"])
	assert.EqualValues(t, 1, v)
	all, _ := value(m, "ldapauth.sync.runs", nil)
	assert.EqualValues(t, 1, all, "the fallback's full sync is not counted again")
	v, _ = value(m, "ldapauth.sync.changes", map[string]string{"ldapauth.sync.change": "users_created"})
	assert.EqualValues(t, len(rep.UsersCreated), v)
	root := onlySpan(t, rec.Ended(), "ldapauth.sync")
	assert.Equal(t, "full sync", spanAttrs(root)["ldapauth.sync.mode"])
	assert.Equal(t, "applied", spanAttrs(root)["ldapauth.sync.outcome"])
}
