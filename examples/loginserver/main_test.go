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

// TestRun runs the program as `go run ./examples/loginserver` does, in demo
// mode, and stops it as Ctrl-C would: it serves, logs requests, and shuts
// down cleanly.
func TestRun(t *testing.T) {
	t.Setenv("LDAP_AUTH_URL", "") // demo mode
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, logger, "127.0.0.1:0", filepath.Join(t.TempDir(), "run.db"), "", "") }()

	var url string
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

	resp, err := http.Post(url+"/api/login", "application/json", strings.NewReader(`{"username":"alice","password":"alice-password"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	require.NoError(t, <-done, "a graceful shutdown is no error")
	assert.Contains(t, logs.String(), `"msg":"request","method":"POST","path":"/api/login","status":200`)
	assert.Contains(t, logs.String(), `"msg":"stopped"`)
	assert.NotContains(t, logs.String(), "alice-password", "passwords are never logged")
}
