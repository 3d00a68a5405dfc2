package ldapauth_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

// A Config or Authenticator printed, logged or encoded shows no secret,
// through every path a program might use by mistake.
func TestSecretsNeverPrinted(t *testing.T) {
	const connSecret, syncSecret = "conn-s3cret-value", "sync-s3cret-value"
	cfg := &ldapauth.Config{URLs: []string{"ldaps://127.0.0.1:636"}, SearchBase: "dc=example,dc=com",
		ConnectionUsername: "cn=svc,dc=example,dc=com", ConnectionPassword: connSecret,
		SyncUsername: "cn=sync,dc=example,dc=com", SyncPassword: syncSecret}
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })

	outputs := map[string]string{}
	for name, v := range map[string]any{"*Config": cfg, "Config": *cfg, "*Authenticator": a} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			outputs[name+" "+verb] = fmt.Sprintf(verb, v)
		}
		js, err := json.Marshal(v)
		require.NoError(t, err, name)
		outputs[name+" json"] = string(js)
		for hname, h := range map[string]func(*bytes.Buffer) slog.Handler{
			"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("config", "value", v)
			outputs[name+" slog "+hname] = buf.String()
		}
	}
	for path, out := range outputs {
		assert.NotContains(t, out, connSecret, path)
		assert.NotContains(t, out, syncSecret, path)
		assert.Contains(t, out, "cn=svc,dc=example,dc=com", "%s still shows the settings: %s", path, out)
		assert.Contains(t, out, "[redacted]", "%s says a secret is set: %s", path, out)
	}
}

// An LDAP_AUTH_URL with user info, a path, a query or a fragment is refused
// at configuration time, and the error never repeats the user info.
func TestURLExtrasRefused(t *testing.T) {
	for _, raw := range []string{
		"ldap://admin:hunter2@127.0.0.1",
		"ldaps://hunter2@127.0.0.1:636",
		"ldap://127.0.0.1/dc=example,dc=com",
		"ldap://127.0.0.1/?uid",
		"ldap://127.0.0.1#x",
	} {
		_, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": raw}))
		require.ErrorIs(t, err, ldapauth.ErrConfig, raw)
		var cerr *ldapauth.ConfigError
		require.ErrorAs(t, err, &cerr, raw)
		assert.Equal(t, "LDAP_AUTH_URL", cerr.Variables[0])
		assert.NotContains(t, err.Error(), "hunter2", raw)
		assert.NotContains(t, err.Error(), "admin", raw)
	}
	for _, raw := range []string{"ldap://127.0.0.1", "ldap://127.0.0.1/", "ldaps://127.0.0.1:636"} {
		_, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": raw}))
		require.NoError(t, err, raw)
	}
	// Printing a Config built in code with such a URL does not show it either.
	cfg := ldapauth.Config{URLs: []string{"ldap://admin:hunter2@127.0.0.1"}}
	assert.NotContains(t, fmt.Sprintf("%+v", cfg), "hunter2")
}

// New logs one warning for each insecure transport: certificate
// verification off (by the setting or by a TLSConfig given in code), and
// plain ldap:// without StartTLS. A verified TLS configuration logs none.
func TestInsecureTransportWarnings(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cfg   ldapauth.Config
		warns []string
	}{
		{"plain ldap", ldapauth.Config{URLs: []string{"ldap://127.0.0.1", "ldaps://127.0.0.1"}}, []string{"clear text"}},
		{"StartTLS", ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, UseTLS: true}, nil},
		{"LDAPS", ldapauth.Config{URLs: []string{"ldaps://127.0.0.1"}}, nil},
		{"skip verify setting", ldapauth.Config{URLs: []string{"ldaps://127.0.0.1"}, InsecureSkipVerify: true}, []string{"verification is off"}},
		{"skip verify in code", ldapauth.Config{URLs: []string{"ldaps://127.0.0.1"}, TLSConfig: &tls.Config{InsecureSkipVerify: true}}, []string{"verification is off"}},
		{"both", ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, InsecureSkipVerify: true}, []string{"verification is off", "clear text"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := tt.cfg
			cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			a, err := ldapauth.New(&cfg)
			require.NoError(t, err)
			t.Cleanup(func() { a.Close() })
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(tt.warns) == 0 {
				assert.Empty(t, logs.String())
				return
			}
			require.Len(t, lines, len(tt.warns), logs.String())
			for i, w := range tt.warns {
				assert.Contains(t, lines[i], `"level":"WARN"`)
				assert.Contains(t, lines[i], w)
			}
		})
	}
}
