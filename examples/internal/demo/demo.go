// Package demo configures the example programs for the embedded demo
// directory (ldaptest.DemoDirectory) when LDAP_AUTH_URL is unset: the
// directory set up as a Flagsmith deployment would be, with the login group
// ldapusers and the synced groups readers and marvel.
package demo

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// Group names of the demo configuration.
const (
	LoginGroup     = "ldapusers"
	OrganisationID = "1"
)

// SyncedGroups are the demo's LDAP_SYNCED_GROUPS, by name.
var SyncedGroups = []string{"readers", "marvel"}

// Account is a demo user as shown to a person trying the examples.
type Account struct {
	Name     string
	Password string
	FullName string
	Groups   []string
	// CanLogIn is false for users outside the login group.
	CanLogIn bool
	// Disabled marks an inactive account (accountStatus: inactive). The
	// login server's demo adds [ActiveOnly] to its search filters, so it
	// cannot log in there.
	Disabled bool
}

// Accounts lists the demo users, the service account left out.
func Accounts() []Account {
	d := ldaptest.DemoDirectory()
	var out []Account
	for _, u := range d.Users {
		if u.Name == d.ServiceAccount {
			continue
		}
		out = append(out, Account{
			Name:     u.Name,
			Password: u.Password,
			FullName: u.GivenName + " " + u.SN,
			Groups:   slices.Clone(u.Groups),
			CanLogIn: slices.Contains(u.Groups, LoginGroup),
			Disabled: u.Disabled,
		})
	}
	return out
}

// Password returns the demo password of user, and false for a name that is
// not a demo user.
func Password(user string) (string, bool) {
	for _, a := range Accounts() {
		if a.Name == user {
			return a.Password, true
		}
	}
	return "", false
}

// Env returns the environment of the demo configuration for srv: the
// server's own variables plus the Flagsmith functions, the login group, the
// organisation, the synced groups and the sync account (the demo
// directory's service account). The map is new on each call.
func Env(srv *ldaptest.Server) map[string]string {
	vars := srv.Env()
	d := ldaptest.DemoDirectory()
	for _, u := range d.Users {
		if u.Name == d.ServiceAccount {
			vars["LDAP_SYNC_USER_USERNAME"] = srv.UserDN(u.Name) // its own DN: it lives outside the users' branch
			vars["LDAP_SYNC_USER_PASSWORD"] = u.Password
		}
	}
	vars["LDAP_AUTH_FORMAT_USERNAME"] = "django_python3_ldap.utils.format_username_openldap"
	vars["LDAP_AUTH_FORMAT_SEARCH_FILTERS"] = "flagsmith_ldap.ldap.login_group_search_filter"
	vars["LDAP_LOGIN_GROUP"] = srv.GroupDN(LoginGroup)
	vars["LDAP_AUTH_SYNC_USER_RELATIONS"] = "flagsmith_ldap.ldap.sync_user_groups"
	vars["LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"] = OrganisationID
	groups := ""
	for i, g := range SyncedGroups {
		if i > 0 {
			groups += ":"
		}
		groups += srv.GroupDN(g)
	}
	vars["LDAP_SYNCED_GROUPS"] = groups
	return vars
}

// Config returns the demo configuration for srv, read from [Env] by
// ldapauth.LoadConfig as a deployment's environment would be.
func Config(srv *ldaptest.Server) (*ldapauth.Config, error) {
	vars := Env(srv)
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	return cfg, nil
}

// ActiveOnly adds (accountStatus=active) to the filters of Filters, so that
// an account the directory marks inactive is not let in (the bind
// succeeds, the search finds no entry: ErrNotPermitted); a sync with it
// leaves such accounts out. The login server's demo uses it. It is
// how a deployment excludes disabled accounts with a filter builder of its
// own; on Active Directory, LDAP_AUTH_EXCLUDE_DISABLED=true does it for the
// built-in filters.
type ActiveOnly struct {
	Filters ldapauth.SearchFilterBuilder
}

// SearchFilters implements [ldapauth.SearchFilterBuilder].
func (a ActiveOnly) SearchFilters(cfg *ldapauth.Config, lookup map[string]string) ([]string, error) {
	filters, err := a.Filters.SearchFilters(cfg, lookup)
	if err != nil {
		return nil, err
	}
	return append(filters, "(accountStatus=active)"), nil
}

// configVariables are the LDAP variables whose presence without
// LDAP_AUTH_URL means a real configuration with the URL missing.
var configVariables = []string{
	"LDAP_AUTH_USE_TLS", "LDAP_AUTH_SEARCH_BASE", "LDAP_AUTH_OBJECT_CLASS", "LDAP_AUTH_USER_FIELDS",
	"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN", "LDAP_AUTH_FORMAT_USERNAME", "LDAP_AUTH_FORMAT_SEARCH_FILTERS", "LDAP_AUTH_SYNC_USER_RELATIONS",
	"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID", "LDAP_SYNCED_GROUPS", "LDAP_LOGIN_GROUP", "LDAP_SYNC_USER_USERNAME",
	"LDAP_SYNC_USER_PASSWORD", "LDAP_AUTH_CONNECTION_USERNAME", "LDAP_AUTH_CONNECTION_PASSWORD", "LDAP_AUTH_TLS_CA_FILE",
}

// Setup reads the configuration from the environment. When LDAP_AUTH_URL is
// unset it starts the demo directory instead and returns its configuration
// and server (the caller closes it); otherwise the server is nil. A bad
// environment is an error.
func Setup() (*ldapauth.Config, *ldaptest.Server, error) {
	return SetupEnv(os.LookupEnv)
}

// SetupEnv is Setup with the environment read through lookup (as
// os.LookupEnv), for programs tested with an environment of their own.
//
// The demo directory's passwords are public, so demo mode refuses to start
// when LDAP_AUTH_URL is unset but other LDAP variables are set (a forgotten
// URL), or when DATABASE_URL names a database: demo users must never reach
// a real database. A -db flag naming a file is the caller's explicit choice.
func SetupEnv(lookup func(string) (string, bool)) (*ldapauth.Config, *ldaptest.Server, error) {
	cfg, err := ldapauth.LoadConfig(lookup)
	if err == nil {
		return cfg, nil, nil
	}
	if url, _ := lookup("LDAP_AUTH_URL"); url != "" {
		return nil, nil, err
	}
	// LDAP_AUTH_URL is unset. If the rest of an LDAP configuration is there,
	// the URL was forgotten (or the env file not exported): refuse, rather
	// than serve a directory whose passwords are public in its place.
	var set []string
	for _, name := range configVariables {
		if v, ok := lookup(name); ok && v != "" {
			set = append(set, name)
		}
	}
	if len(set) > 0 {
		return nil, nil, fmt.Errorf("%w: %s not set, but %s %s: set it, or unset them to run the demo directory",
			ldapauth.ErrConfig, "LDAP_AUTH_URL", strings.Join(set, ", "), map[bool]string{true: "is", false: "are"}[len(set) == 1])
	}
	if v, ok := lookup("DATABASE_URL"); ok && v != "" {
		return nil, nil, fmt.Errorf("%w: %s not set, so this would be the demo directory, whose passwords are public; it does not write into DATABASE_URL: set %s, or unset DATABASE_URL",
			ldapauth.ErrConfig, "LDAP_AUTH_URL", "LDAP_AUTH_URL")
	}
	srv, err := ldaptest.NewServer(ldaptest.DemoDirectory())
	if err != nil {
		return nil, nil, fmt.Errorf("start the demo directory: %w", err)
	}
	cfg, err = Config(srv)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return cfg, srv, nil
}
