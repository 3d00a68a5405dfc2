package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// readTextfile parses path as node_exporter's textfile collector would,
// with Prometheus's text parser, into name{labels} -> value.
func readTextfile(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "readable by the collector's user")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(f)
	require.NoError(t, err)
	out := map[string]float64{}
	for name, fam := range families {
		require.Equal(t, dto.MetricType_GAUGE, fam.GetType(), name)
		require.NotEmpty(t, fam.GetHelp(), name)
		for _, m := range fam.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestTextfile: -textfile leaves the run's numbers for node_exporter, for
// a good run, a refused one and a failed one alike, replacing the file
// whole each time.
func TestTextfile(t *testing.T) {
	srv, vars := demoDirectory(t)
	db := sqliteDB(t)
	dir := t.TempDir()
	prom := filepath.Join(dir, "ldapauth_sync.prom")

	before := time.Now()
	r := command(t, vars, "-db", db, "-quiet", "-json", "-create-users", "-textfile", prom)
	require.Equal(t, exitOK, r.code, r.stderr)
	rep := decode(t, r.stdout)
	m := readTextfile(t, prom)
	assert.InDelta(t, float64(before.UnixMilli())/1000, m["ldapauth_sync_last_run_timestamp_seconds"], 60)
	assert.GreaterOrEqual(t, m["ldapauth_sync_last_run_timestamp_seconds"], float64(before.UnixMilli())/1000)
	assert.Positive(t, m["ldapauth_sync_duration_seconds"])
	assert.Equal(t, 1.0, m["ldapauth_sync_success"])
	assert.Equal(t, 0.0, m["ldapauth_sync_exit_code"])
	assert.Equal(t, 1.0, m["ldapauth_sync_applied"])
	assert.Equal(t, 0.0, m["ldapauth_sync_dry_run"])
	assert.EqualValues(t, rep.Pages, m["ldapauth_sync_pages"])
	assert.EqualValues(t, rep.DirectoryUsers, m["ldapauth_sync_directory_users"])
	assert.EqualValues(t, 5, m["ldapauth_sync_changes{change=users_created}"])
	assert.EqualValues(t, len(rep.UsersCreated), m["ldapauth_sync_changes{change=users_created}"])
	assert.EqualValues(t, len(rep.MembershipsAdded), m["ldapauth_sync_changes{change=memberships_added}"])
	assert.EqualValues(t, len(rep.OrganisationJoins), m["ldapauth_sync_changes{change=organisation_joins}"])

	// The login group emptied by mistake: the guard refuses, and the file
	// says so, with the plan's numbers.
	d := ldaptest.DemoDirectory()
	for i := range d.Users {
		d.Users[i].Groups = slices.DeleteFunc(d.Users[i].Groups, func(g string) bool { return g == demo.LoginGroup })
	}
	require.NoError(t, srv.SetDirectory(d))
	r = command(t, vars, "-db", db, "-quiet", "-textfile", prom)
	require.Equal(t, exitGuard, r.code, r.stderr)
	m = readTextfile(t, prom)
	assert.Equal(t, 0.0, m["ldapauth_sync_success"])
	assert.Equal(t, float64(exitGuard), m["ldapauth_sync_exit_code"])
	assert.Equal(t, 0.0, m["ldapauth_sync_applied"])
	assert.EqualValues(t, 5, m["ldapauth_sync_changes{change=users_removed}"], "the refused plan")
	assert.EqualValues(t, 0, m["ldapauth_sync_changes{change=users_created}"], "the previous run's numbers are gone")

	// The directory down: no report, the failure is still recorded.
	down := demo.Env(srv)
	down["LDAP_AUTH_URL"] = "ldap://127.0.0.1:1"
	r = command(t, down, "-db", db, "-quiet", "-textfile", prom)
	require.Equal(t, exitFailure, r.code, r.stderr)
	m = readTextfile(t, prom)
	assert.Equal(t, 0.0, m["ldapauth_sync_success"])
	assert.Equal(t, float64(exitFailure), m["ldapauth_sync_exit_code"])
	_, planned := m["ldapauth_sync_pages"]
	assert.False(t, planned, "no plan, no plan numbers: %v", m)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")
	assert.Equal(t, "ldapauth_sync.prom", entries[0].Name())

	r = command(t, vars, "-db", db, "-textfile", filepath.Join(dir, "sync.txt"))
	assert.Equal(t, exitUsage, r.code)
	assert.True(t, strings.Contains(r.stderr, `-textfile "`) && strings.Contains(r.stderr, "must end in .prom"), r.stderr)

	require.NoError(t, srv.SetDirectory(ldaptest.DemoDirectory()))
	r = command(t, vars, "-db", db, "-quiet", "-textfile", filepath.Join(dir, "missing", "sync.prom"))
	assert.Equal(t, exitFailure, r.code, "a file that cannot be written fails the run")
	assert.Contains(t, r.stderr, "-textfile")
}
