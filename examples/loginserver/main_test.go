package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startDemo runs the program in demo mode as `go run ./examples/loginserver`
// does, on a free port of 127.0.0.1, and returns the URL it logs, its logs,
// and stop, which cancels it as Ctrl-C would and returns run's error.
func startDemo(t *testing.T) (url string, logs *lockedBuffer, stop func() error) {
	t.Helper()
	t.Setenv("LDAP_AUTH_URL", "") // demo mode
	logs = &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	st := defaultSettings()
	st.addr, st.db = "127.0.0.1:0", filepath.Join(t.TempDir(), "run.db")
	go func() { done <- run(ctx, logger, st) }()
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() { _ = stop() })

	require.Eventually(t, func() bool {
		for line := range strings.Lines(logs.String()) {
			var rec struct{ Msg, URL string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				url = rec.URL
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "the server logs where it listens:\n%s", logs)
	return url, logs, stop
}

// TestRun runs the program as `go run ./examples/loginserver` does, in demo
// mode, and stops it as Ctrl-C would: it serves, logs requests, and shuts
// down cleanly.
func TestRun(t *testing.T) {
	url, logs, stop := startDemo(t)

	resp, err := http.Post(url+"/api/login", "application/json", strings.NewReader(`{"username":"alice","password":"alice-password"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Post(url+"/api/login", "application/json", strings.NewReader(`{"username":"mallory","password":"mallory-password"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the demo's inactive account is refused")

	require.NoError(t, stop(), "a graceful shutdown is no error")
	assert.Contains(t, logs.String(), `"msg":"request","method":"POST","path":"/api/login","status":200`)
	assert.Contains(t, logs.String(), `"msg":"stopped"`)
	assert.NotContains(t, logs.String(), "alice-password", "passwords are never logged")
}

// TestFlags: every flag has a LOGINSERVER_* variable, the command line wins,
// and a bad value names its variable or flag.
func TestFlags(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":                    "postgres://app@127.0.0.1/app",
		"LOGINSERVER_PUBLIC_URL":          "https://login.example.com",
		"LOGINSERVER_THROTTLE_USER_LIMIT": "2",
		"LOGINSERVER_SESSION_TTL":         "1h",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	st, err := parseFlags([]string{"-session-ttl", "2h"}, lookup)
	require.NoError(t, err)
	assert.Equal(t, "postgres://app@127.0.0.1/app", st.db)
	assert.Equal(t, "https://login.example.com", st.publicURL)
	assert.Equal(t, 2, st.throttle.UserLimit)
	assert.Equal(t, 3, st.throttle.KnownClientLimit, "one more than the user limit unless given")
	assert.Equal(t, 2*time.Hour, st.sessionTTL, "the command line wins")

	st, err = parseFlags(nil, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	assert.Equal(t, defaultSettings(), st)

	env["LOGINSERVER_MAX_SESSIONS"] = "many"
	_, err = parseFlags(nil, lookup)
	require.ErrorContains(t, err, "LOGINSERVER_MAX_SESSIONS")
	delete(env, "LOGINSERVER_MAX_SESSIONS")
	_, err = parseFlags([]string{"-throttle-user-limit", "0"}, lookup)
	require.ErrorContains(t, err, "-throttle-user-limit")
	_, err = parseProxies("10.0.0.0/8, proxy.example")
	require.ErrorContains(t, err, "proxy.example")
}
