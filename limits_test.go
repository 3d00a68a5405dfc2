package ldapauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

// Usernames over 256 bytes and passwords over 1,024 bytes are refused as
// invalid credentials before any I/O (an oversized request could make a
// server drop the connection and be marked down: a failover any anonymous
// caller could force), and the error quotes only a short prefix of the
// name. Names and passwords at the limit are sent; the Config may raise
// the limits.
func TestCredentialLengthLimits(t *testing.T) {
	ln := listenCounting(t)
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, ReceiveTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	huge := strings.Repeat("m", 1<<20)
	for _, c := range []struct{ name, user, pass string }{
		{"username over 256 bytes", strings.Repeat("a", 256+1), "x"},
		{"username of 1 MiB", huge, "x"},
		{"multi-byte username over 256 bytes", strings.Repeat("ü", 129), "x"},
		{"password over 1,024 bytes", "alice", strings.Repeat("p", 1024+1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Authenticate(context.Background(), c.user, c.pass)
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.Less(t, len(err.Error()), 200, "a bounded message")
			assert.NotContains(t, err.Error(), c.pass)
			var lerr *ldapauth.LoginError
			require.ErrorAs(t, err, &lerr)
			assert.LessOrEqual(t, len(lerr.Username), 70, "a short prefix of the name")
		})
	}
	assert.Zero(t, ln.accepted.Load(), "nothing was sent")

	_, err = a.Authenticate(context.Background(), strings.Repeat("a", 256), strings.Repeat("p", 1024))
	require.ErrorIs(t, err, ldapauth.ErrUnavailable, "at the limits the login is tried")
	assert.Equal(t, int64(1), ln.accepted.Load())

	raised, err := ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, ReceiveTimeout: 100 * time.Millisecond,
		MaxUsernameLength: 512, MaxPasswordLength: 4096})
	require.NoError(t, err)
	t.Cleanup(func() { raised.Close() })
	_, err = raised.Authenticate(context.Background(), strings.Repeat("a", 512), strings.Repeat("p", 4096))
	require.ErrorIs(t, err, ldapauth.ErrUnavailable, "raised limits let longer credentials through")
	assert.Equal(t, int64(2), ln.accepted.Load())

	_, err = ldapauth.New(&ldapauth.Config{URLs: []string{ln.URL()}, MaxUsernameLength: -1})
	require.ErrorIs(t, err, ldapauth.ErrConfig)
}
