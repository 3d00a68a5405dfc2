package ldapauth_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

// env returns a lookup function over m, as LoadConfig takes.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// readEnvFile reads KEY=VALUE lines the way docker --env-file does: no
// quote removal, comments and blank lines skipped.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, line)
		m[k] = v
	}
	require.NoError(t, sc.Err())
	return m
}

// configErrors returns the ConfigErrors joined in err, keyed by the first
// variable each names.
func configErrors(t *testing.T, err error) map[string]*ldapauth.ConfigError {
	t.Helper()
	out := map[string]*ldapauth.ConfigError{}
	var walk func(error)
	walk = func(e error) {
		var ce *ldapauth.ConfigError
		if errors.As(e, &ce) && ce == e {
			out[ce.Variables[0]] = ce
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
		}
	}
	walk(err)
	return out
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1:389"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"ldap://127.0.0.1:389"}, cfg.URLs)
	assert.False(t, cfg.UseTLS)
	assert.Equal(t, "ou=people,dc=example,dc=com", cfg.SearchBase)
	assert.Equal(t, "inetOrgPerson", cfg.ObjectClass)
	assert.Equal(t, map[string]string{"username": "uid", "first_name": "givenName", "last_name": "sn", "email": "mail"}, cfg.UserFields)
	assert.Equal(t, (10 * time.Second), cfg.ConnectTimeout)
	assert.Equal(t, (10 * time.Second), cfg.ReceiveTimeout)
	assert.Equal(t, 8, cfg.PoolSize)
	assert.Equal(t, 180*time.Second, cfg.PoolIdleTimeout, "below Active Directory's 900 s")
	assert.Nil(t, cfg.FormatUsername, "nil means the OpenLDAP formatter")
	assert.Nil(t, cfg.SearchFilters, "nil means the default filters")
	assert.Nil(t, cfg.SyncRelations, "nil means no relations")
	assert.Empty(t, cfg.SyncedGroups)
	assert.Empty(t, cfg.LoginGroup)
	assert.Empty(t, cfg.OrganisationID)
	assert.False(t, cfg.InsecureSkipVerify)
	assert.Equal(t, ldapauth.NestedGroups(""), cfg.NestedGroups)
	assert.False(t, cfg.ExcludeDisabled)
}

func TestLoadConfigNestedGroups(t *testing.T) {
	tests := []struct {
		value string
		want  ldapauth.NestedGroups
		ok    bool
	}{
		{"", ldapauth.NestedGroups(""), true},
		{"off", ldapauth.NestedGroups(""), true},
		{"OFF", ldapauth.NestedGroups(""), true},
		{"active_directory", ldapauth.NestedGroupsActiveDirectory, true},
		{"Active_Directory", ldapauth.NestedGroupsActiveDirectory, true},
		{`"walk"`, ldapauth.NestedGroupsWalk, true},
		{"true", ldapauth.NestedGroups(""), false},
		{"in_chain", ldapauth.NestedGroups(""), false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := ldapauth.LoadConfig(env(map[string]string{
				"LDAP_AUTH_URL":                   "ldap://127.0.0.1",
				"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "login_group",
				"LDAP_LOGIN_GROUP":                "cn=g,dc=x",
				"LDAP_AUTH_NESTED_GROUPS":         tt.value,
			}))
			if !tt.ok {
				require.ErrorIs(t, err, ldapauth.ErrConfig)
				got := configErrors(t, err)
				require.Len(t, got, 1, "%v", err)
				assert.Contains(t, got, "LDAP_AUTH_NESTED_GROUPS")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg.NestedGroups)
		})
	}
}

func TestLoadConfigEveryVariable(t *testing.T) {
	caFile := writeCA(t)
	cfg, err := ldapauth.LoadConfig(env(map[string]string{
		"LDAP_AUTH_URL":                          " ldap://127.0.0.1:3890, ldap://127.0.0.2:3891  ldap://[::1]:3892 ",
		"LDAP_AUTH_USE_TLS":                      "yes",
		"LDAP_AUTH_SEARCH_BASE":                  "ou=staff,dc=corp,dc=test",
		"LDAP_AUTH_OBJECT_CLASS":                 "person",
		"LDAP_AUTH_USER_FIELDS":                  " username = cn , email=mail,first_name=givenName ",
		"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN":      "CORP",
		"LDAP_AUTH_CONNECT_TIMEOUT":              "3",
		"LDAP_AUTH_RECEIVE_TIMEOUT":              "7",
		"LDAP_AUTH_POOL_SIZE":                    "3",
		"LDAP_AUTH_POOL_IDLE_TIMEOUT":            "60",
		"LDAP_AUTH_FORMAT_USERNAME":              "django_python3_ldap.utils.format_username_active_directory",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "42",
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS":        "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_SYNCED_GROUPS":                     " cn=a,ou=groups,dc=corp,dc=test : :cn=b,ou=groups,dc=corp,dc=test",
		"LDAP_LOGIN_GROUP":                       "cn=login,ou=groups,dc=corp,dc=test",
		"LDAP_SYNC_USER_USERNAME":                "cn=sync,dc=corp,dc=test",
		"LDAP_SYNC_USER_PASSWORD":                " sync secret ",
		"LDAP_AUTH_CONNECTION_USERNAME":          "cn=svc,dc=corp,dc=test",
		"LDAP_AUTH_CONNECTION_PASSWORD":          "svc secret",
		"LDAP_AUTH_TLS_CA_FILE":                  caFile,
		"LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY":     "false",
		"LDAP_SYNC_PAGE_SIZE":                    "200",
		"LDAP_SYNC_MAX_REMOVAL_PERCENT":          "25",
		"LDAP_AUTH_NESTED_GROUPS":                " Walk ",
		"LDAP_AUTH_EXCLUDE_DISABLED":             "yes",
	}))
	require.NoError(t, err)
	assert.Equal(t, []string{"ldap://127.0.0.1:3890", "ldap://127.0.0.2:3891", "ldap://[::1]:3892"}, cfg.URLs)
	assert.True(t, cfg.UseTLS)
	assert.Equal(t, "ou=staff,dc=corp,dc=test", cfg.SearchBase)
	assert.Equal(t, "person", cfg.ObjectClass)
	assert.Equal(t, map[string]string{"username": "cn", "email": "mail", "first_name": "givenName"}, cfg.UserFields)
	assert.Equal(t, "CORP", cfg.ActiveDirectoryDomain)
	assert.Equal(t, 3*time.Second, cfg.ConnectTimeout)
	assert.Equal(t, 7*time.Second, cfg.ReceiveTimeout)
	assert.Equal(t, 3, cfg.PoolSize)
	assert.Equal(t, 60*time.Second, cfg.PoolIdleTimeout)
	assert.Equal(t, ldapauth.ActiveDirectoryFormatter{}, cfg.FormatUsername)
	assert.Equal(t, "42", cfg.OrganisationID)
	assert.Equal(t, ldapauth.SyncUserGroups{}, cfg.SyncRelations)
	assert.Equal(t, ldapauth.LoginGroupFilters{}, cfg.SearchFilters)
	assert.Equal(t, []string{"cn=a,ou=groups,dc=corp,dc=test", "cn=b,ou=groups,dc=corp,dc=test"}, cfg.SyncedGroups)
	assert.Equal(t, "cn=login,ou=groups,dc=corp,dc=test", cfg.LoginGroup)
	assert.Equal(t, "cn=sync,dc=corp,dc=test", cfg.SyncUsername)
	assert.Equal(t, " sync secret ", cfg.SyncPassword, "passwords are taken verbatim")
	assert.Equal(t, "cn=svc,dc=corp,dc=test", cfg.ConnectionUsername)
	assert.Equal(t, "svc secret", cfg.ConnectionPassword)
	assert.Equal(t, caFile, cfg.TLSCAFile)
	assert.False(t, cfg.InsecureSkipVerify)
	assert.Equal(t, ldapauth.NestedGroupsWalk, cfg.NestedGroups)
	assert.True(t, cfg.ExcludeDisabled)
	assert.Equal(t, 200, cfg.SyncPageSize)
	assert.Equal(t, 25, cfg.SyncMaxRemovalPercent)
}

func TestLoadConfigSyncSettings(t *testing.T) {
	tests := []struct {
		name, pageSize, percent string
		wantPage, wantPercent   int
	}{
		{"unset: the defaults apply in New", "", "", 0, 0},
		{"paging off", "off", "", -1, 0},
		{"paging off, any case", "OFF", "", -1, 0},
		{"paging off as in code", "-1", "", -1, 0},
		{"a page size", "1000", "", 1000, 0},
		{"a share", "", "50", 0, 50},
		{"a share with a percent sign", "", "5%", 0, 5},
		{"the share check off", "", "100", 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1"}
			if tt.pageSize != "" {
				m["LDAP_SYNC_PAGE_SIZE"] = tt.pageSize
			}
			if tt.percent != "" {
				m["LDAP_SYNC_MAX_REMOVAL_PERCENT"] = tt.percent
			}
			cfg, err := ldapauth.LoadConfig(env(m))
			require.NoError(t, err)
			assert.Equal(t, tt.wantPage, cfg.SyncPageSize)
			assert.Equal(t, tt.wantPercent, cfg.SyncMaxRemovalPercent)
		})
	}
}

func TestLoadConfigCallableNames(t *testing.T) {
	base := map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	formatters := map[string]ldapauth.UsernameFormatter{
		"django_python3_ldap.utils.format_username_openldap": ldapauth.OpenLDAPFormatter{},
		"openldap": ldapauth.OpenLDAPFormatter{},
		"django_python3_ldap.utils.format_username_active_directory": ldapauth.ActiveDirectoryFormatter{},
		"active_directory": ldapauth.ActiveDirectoryFormatter{},
		"django_python3_ldap.utils.format_username_active_directory_principal": ldapauth.ActiveDirectoryPrincipalFormatter{},
		"active_directory_principal": ldapauth.ActiveDirectoryPrincipalFormatter{},
	}
	for name, want := range formatters {
		t.Run(name, func(t *testing.T) {
			cfg, err := ldapauth.LoadConfig(env(with(map[string]string{"LDAP_AUTH_FORMAT_USERNAME": name, "LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN": "corp.test"})))
			require.NoError(t, err)
			assert.Equal(t, want, cfg.FormatUsername)
		})
	}
	filters := map[string]ldapauth.SearchFilterBuilder{
		"django_python3_ldap.utils.format_search_filters": ldapauth.DefaultFilters{},
		"default": ldapauth.DefaultFilters{},
		"custom_auth.ldap.login_group_search_filter":    ldapauth.LoginGroupFilters{},
		"flagsmith_ldap.ldap.login_group_search_filter": ldapauth.LoginGroupFilters{},
		"flagsmith.ldap.login_group_search_filter":      ldapauth.LoginGroupFilters{},
		"login_group": ldapauth.LoginGroupFilters{},
	}
	for name, want := range filters {
		t.Run(name, func(t *testing.T) {
			cfg, err := ldapauth.LoadConfig(env(with(map[string]string{"LDAP_AUTH_FORMAT_SEARCH_FILTERS": name, "LDAP_LOGIN_GROUP": "cn=g,dc=x"})))
			if want == (ldapauth.DefaultFilters{}) {
				require.ErrorIs(t, err, ldapauth.ErrConfig, "the default filters ignore the login group")
				cfg, err = ldapauth.LoadConfig(env(with(map[string]string{"LDAP_AUTH_FORMAT_SEARCH_FILTERS": name})))
			}
			require.NoError(t, err)
			assert.Equal(t, want, cfg.SearchFilters)
		})
	}
	syncers := map[string]ldapauth.RelationSyncer{
		"django_python3_ldap.utils.sync_user_relations": ldapauth.NoRelations{},
		"none":                                 ldapauth.NoRelations{},
		"custom_auth.ldap.sync_user_groups":    ldapauth.SyncUserGroups{},
		"flagsmith_ldap.ldap.sync_user_groups": ldapauth.SyncUserGroups{},
		"flagsmith.ldap.sync_user_groups":      ldapauth.SyncUserGroups{},
		"sync_user_groups":                     ldapauth.SyncUserGroups{},
	}
	for name, want := range syncers {
		t.Run(name, func(t *testing.T) {
			extra := map[string]string{"LDAP_AUTH_SYNC_USER_RELATIONS": name}
			if want == (ldapauth.SyncUserGroups{}) {
				extra["LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"] = "1"
			}
			cfg, err := ldapauth.LoadConfig(env(with(extra)))
			require.NoError(t, err)
			assert.Equal(t, want, cfg.SyncRelations)
		})
	}
}

// The docs' example values, as an env file, load unchanged for both images.
func TestLoadConfigFlagsmithEnvFiles(t *testing.T) {
	for _, file := range []string{"flagsmith-api-ee.env", "flagsmith-private-cloud.env"} {
		t.Run(file, func(t *testing.T) {
			cfg, err := ldapauth.LoadConfig(env(readEnvFile(t, filepath.Join("testdata", file))))
			require.NoError(t, err)
			assert.Equal(t, []string{"ldap://localhost:389"}, cfg.URLs)
			assert.False(t, cfg.UseTLS)
			assert.Equal(t, map[string]string{"username": "uid", "email": "email"}, cfg.UserFields)
			assert.Equal(t, 60*time.Second, cfg.ConnectTimeout)
			assert.Equal(t, 60*time.Second, cfg.ReceiveTimeout)
			assert.Equal(t, ldapauth.OpenLDAPFormatter{}, cfg.FormatUsername)
			assert.Equal(t, ldapauth.SyncUserGroups{}, cfg.SyncRelations)
			assert.Equal(t, ldapauth.LoginGroupFilters{}, cfg.SearchFilters)
			assert.Equal(t, "1", cfg.OrganisationID)
			assert.Equal(t, []string{
				"CN=Readers,CN=Roles,CN=webapp01,dc=admin,dc=com",
				"CN=Marvel,CN=Roles,CN=webapp01,dc=admin,dc=com",
			}, cfg.SyncedGroups)
			assert.Equal(t, "CN=Readers,CN=Roles,CN=webapp01,dc=admin,dc=com", cfg.LoginGroup)
			assert.Equal(t, "john", cfg.SyncUsername)
			assert.Equal(t, "password", cfg.SyncPassword)
		})
	}
	t.Run("active directory section, quoted", func(t *testing.T) {
		cfg, err := ldapauth.LoadConfig(env(readEnvFile(t, filepath.Join("testdata", "flagsmith-active-directory.env"))))
		require.NoError(t, err)
		assert.Equal(t, ldapauth.ActiveDirectoryPrincipalFormatter{}, cfg.FormatUsername)
		assert.Equal(t, "domain.com", cfg.ActiveDirectoryDomain)
		assert.Equal(t, "user", cfg.ObjectClass)
		assert.Equal(t, "sAMAccountName", cfg.UserFields["username"])
	})
}

func TestLoadConfigNotConfigured(t *testing.T) {
	_, err := ldapauth.LoadConfig(env(map[string]string{}))
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	var cerr *ldapauth.ConfigError
	require.ErrorAs(t, err, &cerr)
	assert.Equal(t, []string{"LDAP_AUTH_URL"}, cerr.Variables, "the error names the variable")
}

// Every bad variable is reported in the one error, never only the first,
// and no secret is echoed.
func TestLoadConfigReportsEveryBadVariable(t *testing.T) {
	const secret = "hunter2-do-not-print"
	_, err := ldapauth.LoadConfig(env(map[string]string{
		"LDAP_AUTH_URL":                      "http://127.0.0.1",
		"LDAP_AUTH_USE_TLS":                  "perhaps",
		"LDAP_AUTH_SEARCH_BASE":              "not a dn",
		"LDAP_AUTH_USER_FIELDS":              "email=mail,first_name",
		"LDAP_AUTH_CONNECT_TIMEOUT":          "soon",
		"LDAP_AUTH_RECEIVE_TIMEOUT":          "-1",
		"LDAP_AUTH_POOL_SIZE":                "-2",
		"LDAP_AUTH_POOL_IDLE_TIMEOUT":        "5m",
		"LDAP_AUTH_FORMAT_USERNAME":          "myapp.format_username",
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS":    "myapp.filters",
		"LDAP_AUTH_SYNC_USER_RELATIONS":      "myapp.sync",
		"LDAP_SYNCED_GROUPS":                 "cn=ok,dc=x:garbage",
		"LDAP_AUTH_TLS_CA_FILE":              filepath.Join(t.TempDir(), "missing.pem"),
		"LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY": "maybe",
		"LDAP_AUTH_CONNECTION_PASSWORD":      secret,
		"LDAP_SYNC_USER_PASSWORD":            secret,
		"LDAP_SYNC_PAGE_SIZE":                "-5",
		"LDAP_SYNC_MAX_REMOVAL_PERCENT":      "0",
		"LDAP_AUTH_NESTED_GROUPS":            "deep",
		"LDAP_AUTH_EXCLUDE_DISABLED":         "sometimes",
	}))
	require.Error(t, err)
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	assert.NotContains(t, err.Error(), secret)
	got := configErrors(t, err)
	for _, v := range []string{
		"LDAP_AUTH_URL", "LDAP_AUTH_USE_TLS", "LDAP_AUTH_SEARCH_BASE", "LDAP_AUTH_USER_FIELDS",
		"LDAP_AUTH_CONNECT_TIMEOUT", "LDAP_AUTH_RECEIVE_TIMEOUT", "LDAP_AUTH_FORMAT_USERNAME",
		"LDAP_AUTH_POOL_SIZE", "LDAP_AUTH_POOL_IDLE_TIMEOUT", "LDAP_AUTH_FORMAT_SEARCH_FILTERS", "LDAP_AUTH_SYNC_USER_RELATIONS", "LDAP_SYNCED_GROUPS",
		"LDAP_AUTH_TLS_CA_FILE", "LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY",
		"LDAP_AUTH_CONNECTION_USERNAME", "LDAP_SYNC_USER_USERNAME",
		"LDAP_SYNC_PAGE_SIZE", "LDAP_SYNC_MAX_REMOVAL_PERCENT",
		"LDAP_AUTH_NESTED_GROUPS", "LDAP_AUTH_EXCLUDE_DISABLED",
	} {
		assert.Contains(t, got, v, "the error must name %s", v)
	}
	assert.Contains(t, got["LDAP_AUTH_FORMAT_USERNAME"].Problem, "django_python3_ldap.utils.format_username_openldap", "an unknown callable lists the accepted names")
	assert.Contains(t, got["LDAP_SYNCED_GROUPS"].Problem, "item 2")
}

func TestLoadConfigCrossVariableMistakes(t *testing.T) {
	url := map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1"}
	tests := []struct {
		name  string
		env   map[string]string
		names []string // the variables the one error must name
	}{
		{"login group without its filter", map[string]string{"LDAP_LOGIN_GROUP": "cn=g,dc=x"},
			[]string{"LDAP_LOGIN_GROUP", "LDAP_AUTH_FORMAT_SEARCH_FILTERS"}},
		{"group syncer without organisation", map[string]string{"LDAP_AUTH_SYNC_USER_RELATIONS": "flagsmith_ldap.ldap.sync_user_groups"},
			[]string{"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID", "LDAP_AUTH_SYNC_USER_RELATIONS"}},
		{"synced groups without the group syncer", map[string]string{"LDAP_SYNCED_GROUPS": "cn=g,dc=x"},
			[]string{"LDAP_SYNCED_GROUPS", "LDAP_AUTH_SYNC_USER_RELATIONS"}},
		{"organisation without the group syncer", map[string]string{"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1"},
			[]string{"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID", "LDAP_AUTH_SYNC_USER_RELATIONS"}},
		{"principal formatter without domain", map[string]string{"LDAP_AUTH_FORMAT_USERNAME": "django_python3_ldap.utils.format_username_active_directory_principal"},
			[]string{"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN", "LDAP_AUTH_FORMAT_USERNAME"}},
		{"service username without password", map[string]string{"LDAP_AUTH_CONNECTION_USERNAME": "cn=svc,dc=x"},
			[]string{"LDAP_AUTH_CONNECTION_PASSWORD", "LDAP_AUTH_CONNECTION_USERNAME"}},
		{"sync password without username", map[string]string{"LDAP_SYNC_USER_PASSWORD": "x"},
			[]string{"LDAP_SYNC_USER_USERNAME", "LDAP_SYNC_USER_PASSWORD"}},
		{"login-group filter without a group", map[string]string{"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter"},
			[]string{"LDAP_LOGIN_GROUP", "LDAP_AUTH_FORMAT_SEARCH_FILTERS"}},
		{"CA file without TLS", map[string]string{"LDAP_AUTH_TLS_CA_FILE": "CAFILE"},
			[]string{"LDAP_AUTH_TLS_CA_FILE", "LDAP_AUTH_URL", "LDAP_AUTH_USE_TLS"}},
		{"CA file with verification off", map[string]string{"LDAP_AUTH_URL": "ldaps://127.0.0.1", "LDAP_AUTH_TLS_CA_FILE": "CAFILE", "LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY": "true"},
			[]string{"LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY", "LDAP_AUTH_TLS_CA_FILE"}},
		{"nested groups without a group", map[string]string{"LDAP_AUTH_NESTED_GROUPS": "active_directory"},
			[]string{"LDAP_AUTH_NESTED_GROUPS", "LDAP_LOGIN_GROUP", "LDAP_SYNCED_GROUPS"}},
	}
	caFile := writeCA(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range url {
				m[k] = v
			}
			for k, v := range tt.env {
				if v == "CAFILE" {
					v = caFile
				}
				m[k] = v
			}
			_, err := ldapauth.LoadConfig(env(m))
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			got := configErrors(t, err)
			require.Len(t, got, 1, "one error: %v", err)
			ce := got[tt.names[0]]
			require.NotNil(t, ce, "error names %s first: %v", tt.names[0], err)
			assert.Equal(t, tt.names, ce.Variables)
		})
	}
}

// The login-group filter without a group: the Python original adds no
// filter and lets everyone in, so a misspelt LDAP_LOGIN_GROUP opens the
// door. ldapauth refuses it under every name of the filter, from the
// environment and from code.
func TestLoginGroupFilterWithoutGroupRefused(t *testing.T) {
	for _, name := range []string{
		"flagsmith_ldap.ldap.login_group_search_filter", "custom_auth.ldap.login_group_search_filter",
		"flagsmith.ldap.login_group_search_filter", "login_group",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1", "LDAP_AUTH_FORMAT_SEARCH_FILTERS": name}))
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			got := configErrors(t, err)
			require.Len(t, got, 1, "%v", err)
			assert.Equal(t, []string{"LDAP_LOGIN_GROUP", "LDAP_AUTH_FORMAT_SEARCH_FILTERS"}, got["LDAP_LOGIN_GROUP"].Variables)
		})
	}
	for _, f := range []ldapauth.SearchFilterBuilder{ldapauth.LoginGroupFilters{}, &ldapauth.LoginGroupFilters{}} {
		_, err := ldapauth.New(&ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, SearchFilters: f})
		require.ErrorIs(t, err, ldapauth.ErrConfig)
		assert.Contains(t, configErrors(t, err), "LDAP_LOGIN_GROUP", "a code-built configuration is refused too")
	}
}

// LDAP_AUTH_OBJECT_CLASS goes into every search filter: only a name or a
// numeric OID is accepted (RFC 4512), so a filter fragment cannot make
// every login "unknown user" (or widen the search).
func TestObjectClassValidated(t *testing.T) {
	for _, ok := range []string{"inetOrgPerson", "user", "posixAccount", "x-custom-1", "2.5.6.6", "1.3.6.1.4.1.42.2.27.4.2.1", `"person"`} {
		cfg, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1", "LDAP_AUTH_OBJECT_CLASS": ok}))
		require.NoError(t, err, ok)
		assert.Equal(t, strings.Trim(ok, `"`), cfg.ObjectClass)
	}
	for _, bad := range []string{"inetOrgPerson)(uid=*", "*", "user*", "(objectClass=user)", "inet OrgPerson", "-user", "1user", "2", "2..5", "2.5.", "02.5.6", "ünicode", "user;binary"} {
		_, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1", "LDAP_AUTH_OBJECT_CLASS": bad}))
		require.ErrorIs(t, err, ldapauth.ErrConfig, "%q", bad)
		got := configErrors(t, err)
		require.Len(t, got, 1, "%q: %v", bad, err)
		assert.Contains(t, got, "LDAP_AUTH_OBJECT_CLASS", "%q", bad)
	}
	err := (&ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, ObjectClass: "user)(cn=*"}).Validate()
	assert.Contains(t, configErrors(t, err), "LDAP_AUTH_OBJECT_CLASS", "a code-built value is checked too")
}

// LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID from the environment is read as
// Flagsmith reads it: a positive integer that fits in 64 bits. Code may
// still set any string.
func TestOrganisationIDFromEnvironment(t *testing.T) {
	vars := func(id string) map[string]string {
		return map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1", "LDAP_AUTH_SYNC_USER_RELATIONS": "flagsmith_ldap.ldap.sync_user_groups",
			"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": id}
	}
	for id, want := range map[string]string{"1": "1", "42": "42", `"7"`: "7", "+5": "5", "007": "7", "9223372036854775807": "9223372036854775807"} {
		cfg, err := ldapauth.LoadConfig(env(vars(id)))
		require.NoError(t, err, id)
		assert.Equal(t, want, cfg.OrganisationID, id)
	}
	for _, bad := range []string{"one", "-5", "0", "99999999999999999999", "9223372036854775808", "1.5", "1e3", "0x10", "1 2"} {
		_, err := ldapauth.LoadConfig(env(vars(bad)))
		require.ErrorIs(t, err, ldapauth.ErrConfig, "%q", bad)
		got := configErrors(t, err)
		require.Len(t, got, 1, "%q: %v", bad, err)
		assert.Contains(t, got, "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID", "%q", bad)
	}
	require.NoError(t, (&ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, SyncRelations: ldapauth.SyncUserGroups{},
		OrganisationID: "org-one", Store: ldapauth.NewMemStore()}).Validate(), "code may set any string")
}

// The env files of testdata/failclosed: each mistake that would open the
// door or break every login is refused, naming its variables; the
// redundant ldaps:// with LDAP_AUTH_USE_TLS=True loads unchanged.
func TestLoadConfigFailClosedEnvFiles(t *testing.T) {
	for file, vars := range map[string][]string{
		"login-group-filter-without-group.env": {"LDAP_LOGIN_GROUP", "LDAP_AUTH_FORMAT_SEARCH_FILTERS"},
		"object-class-injection.env":           {"LDAP_AUTH_OBJECT_CLASS"},
		"organisation-id-not-integer.env":      {"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"},
	} {
		t.Run(file, func(t *testing.T) {
			_, err := ldapauth.LoadConfig(env(readEnvFile(t, filepath.Join("testdata", "failclosed", file))))
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			got := configErrors(t, err)
			require.Len(t, got, 1, "%v", err)
			require.Contains(t, got, vars[0], "%v", err)
			assert.Equal(t, vars, got[vars[0]].Variables)
		})
	}
	t.Run("ldaps-with-use-tls.env", func(t *testing.T) {
		cfg, err := ldapauth.LoadConfig(env(readEnvFile(t, filepath.Join("testdata", "failclosed", "ldaps-with-use-tls.env"))))
		require.NoError(t, err)
		assert.True(t, cfg.UseTLS)
		assert.Equal(t, []string{"ldaps://localhost:636"}, cfg.URLs)
		cfg.Store = ldapauth.NewMemStore()
		a, err := ldapauth.New(cfg)
		require.NoError(t, err)
		a.Close()
	})
}

func TestValidateCodeBuiltConfig(t *testing.T) {
	cfg := &ldapauth.Config{
		URLs:                  []string{"ldap://127.0.0.1", "ftp://127.0.0.1"},
		LoginGroup:            "cn=g,dc=x",
		SyncRelations:         ldapauth.SyncUserGroups{},
		SyncPageSize:          -2,
		SyncMaxRemovalPercent: 101,
	}
	err := cfg.Validate()
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	got := configErrors(t, err)
	assert.Contains(t, got, "LDAP_SYNC_PAGE_SIZE")
	assert.Contains(t, got, "LDAP_SYNC_MAX_REMOVAL_PERCENT")
	assert.Contains(t, got, "LDAP_AUTH_URL")
	assert.Contains(t, got, "LDAP_LOGIN_GROUP")
	assert.Contains(t, got, "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID")

	_, err = ldapauth.New(cfg)
	require.ErrorIs(t, err, ldapauth.ErrConfig, "New validates too")

	_, err = ldapauth.New(&ldapauth.Config{})
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	assert.Contains(t, configErrors(t, err), "LDAP_AUTH_URL")

	err = (&ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, NestedGroups: "deep", LoginGroup: "cn=g,dc=x", SearchFilters: ldapauth.LoginGroupFilters{}}).Validate()
	assert.Contains(t, configErrors(t, err), "LDAP_AUTH_NESTED_GROUPS", "a code-built value is checked too")

	custom := ldapauth.SearchFilterBuilderFunc(func(*ldapauth.Config, map[string]string) ([]string, error) { return nil, nil })
	err = (&ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, ExcludeDisabled: true, SearchFilters: custom}).Validate()
	got = configErrors(t, err)
	require.Contains(t, got, "LDAP_AUTH_EXCLUDE_DISABLED", "only the built-in builders add the filter")
	assert.Equal(t, []string{"LDAP_AUTH_EXCLUDE_DISABLED", "LDAP_AUTH_FORMAT_SEARCH_FILTERS"}, got["LDAP_AUTH_EXCLUDE_DISABLED"].Variables)
}

func TestLoadConfigPool(t *testing.T) {
	tests := []struct {
		name, size, idle string
		wantSize         int
		wantIdle         time.Duration
		bad              []string
	}{
		{name: "unset", wantSize: 8, wantIdle: 180 * time.Second},
		{name: "off turns pooling off", size: "off", wantSize: -1, wantIdle: 180 * time.Second},
		{name: "-1 turns pooling off, as in code", size: "-1", wantSize: -1, wantIdle: 180 * time.Second},
		{name: "set", size: "32", idle: "600", wantSize: 32, wantIdle: 600 * time.Second},
		{name: "quoted", size: `"4"`, idle: "'30'", wantSize: 4, wantIdle: 30 * time.Second},
		{name: "zero is refused", size: "0", bad: []string{"LDAP_AUTH_POOL_SIZE"}},
		{name: "negative size", size: "-2", bad: []string{"LDAP_AUTH_POOL_SIZE"}},
		{name: "not a number", size: "eight", idle: "1.5", bad: []string{"LDAP_AUTH_POOL_SIZE", "LDAP_AUTH_POOL_IDLE_TIMEOUT"}},
		{name: "zero idle timeout", idle: "0", bad: []string{"LDAP_AUTH_POOL_IDLE_TIMEOUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1"}
			if tt.size != "" {
				vars["LDAP_AUTH_POOL_SIZE"] = tt.size
			}
			if tt.idle != "" {
				vars["LDAP_AUTH_POOL_IDLE_TIMEOUT"] = tt.idle
			}
			cfg, err := ldapauth.LoadConfig(env(vars))
			if len(tt.bad) > 0 {
				require.ErrorIs(t, err, ldapauth.ErrConfig)
				got := configErrors(t, err)
				assert.Len(t, got, len(tt.bad))
				for _, v := range tt.bad {
					assert.Contains(t, got, v)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantSize, cfg.PoolSize)
			assert.Equal(t, tt.wantIdle, cfg.PoolIdleTimeout)
		})
	}
}

// 0 means the default in code and used to mean off in the environment: an
// env file saying 0 is refused with what to write instead, for both sizes,
// and -1 means off in code and environment alike.
func TestLoadConfigZeroSizeRefused(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"LDAP_AUTH_POOL_SIZE", "use off to disable pooling, or leave it unset for the default 8"},
		{"LDAP_SYNC_PAGE_SIZE", "use off to disable paging, or leave it unset for the default 500"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1", tt.name: "0"}))
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			got := configErrors(t, err)
			require.Len(t, got, 1)
			require.Contains(t, got, tt.name, "the error names the variable")
			assert.Contains(t, got[tt.name].Error(), tt.want)
		})
	}
	t.Run("-1 is off in code, as off in the environment", func(t *testing.T) {
		fromEnv, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1",
			"LDAP_AUTH_POOL_SIZE": "off", "LDAP_SYNC_PAGE_SIZE": "off"}))
		require.NoError(t, err)
		inCode := ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, PoolSize: -1, SyncPageSize: -1}
		require.NoError(t, inCode.Validate())
		assert.Equal(t, inCode.PoolSize, fromEnv.PoolSize)
		assert.Equal(t, inCode.SyncPageSize, fromEnv.SyncPageSize)
	})
}

func TestValidatePool(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  ldapauth.Config
		bad  string
	}{
		{name: "zero values mean the defaults", cfg: ldapauth.Config{}},
		{name: "no pool", cfg: ldapauth.Config{PoolSize: -1}},
		{name: "below NoPool", cfg: ldapauth.Config{PoolSize: -5}, bad: "LDAP_AUTH_POOL_SIZE"},
		{name: "negative idle timeout", cfg: ldapauth.Config{PoolIdleTimeout: -time.Second}, bad: "LDAP_AUTH_POOL_IDLE_TIMEOUT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.URLs = []string{"ldap://127.0.0.1"}
			err := cfg.Validate()
			if tt.bad == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			assert.Contains(t, configErrors(t, err), tt.bad)
		})
	}
}

func TestNewGroupSyncerNeedsStore(t *testing.T) {
	_, err := ldapauth.New(&ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, SyncRelations: ldapauth.SyncUserGroups{}, OrganisationID: "1"})
	require.ErrorIs(t, err, ldapauth.ErrConfig)
}

// The built-in pieces are the same by value and by pointer, wherever the
// configuration is checked.
func TestValidateBuiltinsByPointer(t *testing.T) {
	const url, group = "ldap://127.0.0.1", "cn=g,dc=x"
	tests := []struct {
		name     string
		cfg      ldapauth.Config
		variable string // the variable at fault; "" for a valid configuration
	}{
		{"synced groups with NoRelations", ldapauth.Config{SyncRelations: ldapauth.NoRelations{}, SyncedGroups: []string{group}}, "LDAP_SYNCED_GROUPS"},
		{"synced groups with *NoRelations", ldapauth.Config{SyncRelations: &ldapauth.NoRelations{}, SyncedGroups: []string{group}}, "LDAP_SYNCED_GROUPS"},
		{"login group with *DefaultFilters", ldapauth.Config{SearchFilters: &ldapauth.DefaultFilters{}, LoginGroup: group}, "LDAP_LOGIN_GROUP"},
		{"login group with *LoginGroupFilters", ldapauth.Config{SearchFilters: &ldapauth.LoginGroupFilters{}, LoginGroup: group}, ""},
		{"*SyncUserGroups without an organisation", ldapauth.Config{SyncRelations: &ldapauth.SyncUserGroups{}}, "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"},
		{"ExcludeDisabled with *LoginGroupFilters", ldapauth.Config{SearchFilters: &ldapauth.LoginGroupFilters{}, LoginGroup: group, ExcludeDisabled: true}, ""},
		{"*LoginGroupFilters without a login group", ldapauth.Config{SearchFilters: &ldapauth.LoginGroupFilters{}}, "LDAP_LOGIN_GROUP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.URLs = []string{url}
			err := tt.cfg.Validate()
			if tt.variable == "" {
				require.NoError(t, err)
				return
			}
			assert.Contains(t, configErrors(t, err), tt.variable)
		})
	}
}

func TestLoadConfigDirectoryType(t *testing.T) {
	tests := []struct {
		value, nested, exclude string
		want                   ldapauth.DirectoryType
		bad                    []string // the variables the error names, first the one at fault
	}{
		{value: "", want: ldapauth.DirectoryType("")},
		{value: "auto", want: ldapauth.DirectoryType("")},
		{value: "389DS", want: ldapauth.Directory389},
		{value: "openldap", want: ldapauth.DirectoryOpenLDAP},
		{value: "active_directory", nested: "active_directory", want: ldapauth.DirectoryActiveDirectory},
		{value: "other", want: ldapauth.DirectoryType("other")},
		{value: "freeipa", bad: []string{"LDAP_AUTH_DIRECTORY_TYPE"}},
		// What the directory cannot do is named before any login.
		{value: "389ds", nested: "active_directory", bad: []string{"LDAP_AUTH_NESTED_GROUPS", "LDAP_AUTH_DIRECTORY_TYPE"}},
		{value: "openldap", nested: "active_directory", bad: []string{"LDAP_AUTH_NESTED_GROUPS", "LDAP_AUTH_DIRECTORY_TYPE"}},
		{value: "other", exclude: "true", bad: []string{"LDAP_AUTH_EXCLUDE_DISABLED", "LDAP_AUTH_DIRECTORY_TYPE"}},
	}
	for _, tt := range tests {
		t.Run(tt.value+"/"+tt.nested+"/"+tt.exclude, func(t *testing.T) {
			vars := map[string]string{
				"LDAP_AUTH_URL":                   "ldap://127.0.0.1",
				"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "login_group",
				"LDAP_LOGIN_GROUP":                "cn=g,dc=x",
				"LDAP_AUTH_DIRECTORY_TYPE":        tt.value,
			}
			if tt.nested != "" {
				vars["LDAP_AUTH_NESTED_GROUPS"] = tt.nested
			}
			if tt.exclude != "" {
				vars["LDAP_AUTH_EXCLUDE_DISABLED"] = tt.exclude
			}
			cfg, err := ldapauth.LoadConfig(env(vars))
			if tt.bad != nil {
				require.ErrorIs(t, err, ldapauth.ErrConfig)
				var cerr *ldapauth.ConfigError
				require.ErrorAs(t, err, &cerr)
				assert.Equal(t, tt.bad, cerr.Variables)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg.DirectoryType)
		})
	}
}
