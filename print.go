package ldapauth

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// redacted replaces a secret that is set when a Config is printed.
const redacted = "[redacted]"

// printedConfig is what a Config shows of itself through fmt, slog and
// encoding/json: every setting but the secrets, which are only said to be
// set, and URLs without user info.
type printedConfig struct {
	URLs                  []string
	UseTLS                bool
	SearchBase            string
	ObjectClass           string
	UserFields            map[string]string
	ActiveDirectoryDomain string
	ConnectTimeout        time.Duration
	ReceiveTimeout        time.Duration
	PoolSize              int
	PoolIdleTimeout       time.Duration
	FormatUsername        string
	SearchFilters         string
	SyncRelations         string
	OrganisationID        string
	SyncedGroups          []string
	LoginGroup            string
	SyncUsername          string
	SyncPassword          string
	SyncPageSize          int
	SyncMaxRemovalPercent int
	ConnectionUsername    string
	ConnectionPassword    string
	SearchThenBind        bool
	MaxUsernameLength     int
	MaxPasswordLength     int
	NestedGroups          NestedGroups
	ExcludeDisabled       bool
	TLSCAFile             string
	InsecureSkipVerify    bool
	TLSConfig             bool // set in code
	Store                 string
}

func (c *Config) printable() printedConfig {
	secret := func(s string) string {
		if s == "" {
			return ""
		}
		return redacted
	}
	name := func(v any) string {
		if v == nil {
			return ""
		}
		return formatterName(v)
	}
	urls := make([]string, len(c.URLs))
	for i, u := range c.URLs {
		urls[i] = withoutUserInfo(u)
	}
	return printedConfig{
		URLs: urls, UseTLS: c.UseTLS, SearchBase: c.SearchBase, ObjectClass: c.ObjectClass, UserFields: c.UserFields,
		ActiveDirectoryDomain: c.ActiveDirectoryDomain, ConnectTimeout: c.ConnectTimeout, ReceiveTimeout: c.ReceiveTimeout,
		PoolSize: c.PoolSize, PoolIdleTimeout: c.PoolIdleTimeout,
		FormatUsername: name(c.FormatUsername), SearchFilters: name(c.SearchFilters), SyncRelations: name(c.SyncRelations),
		OrganisationID: c.OrganisationID, SyncedGroups: c.SyncedGroups, LoginGroup: c.LoginGroup,
		SyncUsername: c.SyncUsername, SyncPassword: secret(c.SyncPassword), SyncPageSize: c.SyncPageSize,
		SyncMaxRemovalPercent: c.SyncMaxRemovalPercent,
		ConnectionUsername:    c.ConnectionUsername, ConnectionPassword: secret(c.ConnectionPassword),
		SearchThenBind: c.SearchThenBind, MaxUsernameLength: c.MaxUsernameLength, MaxPasswordLength: c.MaxPasswordLength,
		NestedGroups: c.NestedGroups, ExcludeDisabled: c.ExcludeDisabled, TLSCAFile: c.TLSCAFile,
		InsecureSkipVerify: c.InsecureSkipVerify, TLSConfig: c.TLSConfig != nil, Store: name(c.Store),
	}
}

// Format prints the Config for every verb without its secrets: passwords
// "[redacted]", URLs without user info; TLSConfig, Store, Logger named.
func (c Config) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.printable())
}

// LogValue logs the Config without its secrets (see Format).
func (c Config) LogValue() slog.Value { return slog.AnyValue(c.printable()) }

// MarshalJSON encodes the Config without its secrets, for display only.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.printable()) }

// printedAuthenticator is what an Authenticator shows of itself.
type printedAuthenticator struct {
	Config printedConfig
	Closed bool
}

func (a *Authenticator) printable() printedAuthenticator {
	return printedAuthenticator{Config: a.cfg.printable(), Closed: a.closed.Load()}
}

// Format prints the configuration without its secrets (see [Config.Format]).
func (a *Authenticator) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), a.printable())
}

// LogValue logs the configuration without its secrets.
func (a *Authenticator) LogValue() slog.Value { return slog.AnyValue(a.printable()) }

// MarshalJSON encodes the configuration without its secrets.
func (a *Authenticator) MarshalJSON() ([]byte, error) { return json.Marshal(a.printable()) }

// withoutUserInfo returns raw with any user info (user:password@) replaced
// by "[redacted]@", for messages and printing: an LDAP_AUTH_URL may hold a
// password by mistake.
func withoutUserInfo(raw string) string {
	rest := raw
	scheme := ""
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme, rest = raw[:i+3], raw[i+3:]
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	return scheme + redacted + "@" + rest[at+1:]
}
