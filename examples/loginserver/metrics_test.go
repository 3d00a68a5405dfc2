package main

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsEndpoint runs the program in demo mode, logs in twice and
// scrapes /metrics as Prometheus would, parsing it with Prometheus's own
// text parser: ldapauth's metrics are there with the logins counted, and
// the throttle's counts beside them.
func TestMetricsEndpoint(t *testing.T) {
	url, _, stop := startDemo(t)
	t.Cleanup(func() { require.NoError(t, stop()) })

	for _, body := range []string{`{"username":"alice","password":"alice-password"}`, `{"username":"alice","password":"wrong"}`} {
		resp, err := http.Post(url+"/api/login", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
	}

	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), resp.Header.Get("Content-Type"))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "the scrape parses as the Prometheus text format")
	sample := func(name string, typ dto.MetricType, labels map[string]string) *dto.Metric {
		t.Helper()
		f := families[name]
		require.NotNil(t, f, "%s is exported", name)
		require.Equal(t, typ, f.GetType(), name)
	next:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				if !found {
					continue next
				}
			}
			return m
		}
		t.Fatalf("%s has no sample labelled %v", name, labels)
		return nil
	}
	counter, gauge, histogram := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM
	assert.EqualValues(t, 1, sample("ldapauth_logins_total", counter, map[string]string{"ldapauth_login_outcome": "success"}).GetCounter().GetValue())
	assert.EqualValues(t, 1, sample("ldapauth_logins_total", counter, map[string]string{"ldapauth_login_outcome": "invalid_credentials"}).GetCounter().GetValue())
	assert.EqualValues(t, 1, sample("ldapauth_login_duration_seconds", histogram, map[string]string{"ldapauth_login_outcome": "success"}).GetHistogram().GetSampleCount())
	assert.EqualValues(t, 1, sample("db_client_operation_duration_seconds", histogram,
		map[string]string{"db_operation_name": "bind", "error_type": "invalid_credentials", "server_address": "127.0.0.1"}).GetHistogram().GetSampleCount())
	assert.EqualValues(t, 1, sample("db_client_connection_count", gauge,
		map[string]string{"db_client_connection_pool_name": "ldapauth.users", "db_client_connection_state": "idle"}).GetGauge().GetValue())
	assert.EqualValues(t, 1, sample("ldapauth_pool_dials_total", counter, map[string]string{"db_client_connection_pool_name": "ldapauth.users"}).GetCounter().GetValue())
	assert.EqualValues(t, 1, sample("ldapauth_server_up", gauge, nil).GetGauge().GetValue())
	assert.EqualValues(t, 1, sample("loginserver_throttle_failures_total", counter, nil).GetCounter().GetValue(),
		"the throttle's counts share the endpoint")
	assert.NotNil(t, families["go_goroutines"], "the Go runtime's metrics too")
}
