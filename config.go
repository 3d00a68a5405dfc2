package ldapauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults applied by [LoadConfig] and by [New] to zero fields.
const (
	// defaultSearchBase is django-python3-ldap's LDAP_AUTH_SEARCH_BASE default.
	defaultSearchBase = "ou=people,dc=example,dc=com"
	// defaultObjectClass is django-python3-ldap's LDAP_AUTH_OBJECT_CLASS default.
	defaultObjectClass = "inetOrgPerson"
	// defaultConnectTimeout bounds establishing a connection (TCP and TLS)
	// when LDAP_AUTH_CONNECT_TIMEOUT is unset. The Python original waits
	// forever by default; ldapauth does not.
	defaultConnectTimeout = 10 * time.Second
	// defaultReceiveTimeout bounds the wait for each LDAP response when
	// LDAP_AUTH_RECEIVE_TIMEOUT is unset.
	defaultReceiveTimeout = 10 * time.Second
	// defaultHedgeDelay is how long a connect may take before one to the
	// next server starts too, when Config.HedgeDelay is zero (see
	// docs/connections.md, "Hedged connect"). A connect on a LAN takes
	// milliseconds and StartTLS across a continent (three round trips)
	// well under a second, so 1 s hedges no working connect, yet cuts what
	// the first logins pay for a black-holed server from the connect
	// timeout (10 s by default) to 1 s.
	defaultHedgeDelay = time.Second
	// noHedge, as Config.HedgeDelay, turns hedging off: a connect to the
	// next server starts only when the one before failed.
	noHedge = -1
	// defaultSyncPageSize is the page size of the sync's paged search when
	// LDAP_SYNC_PAGE_SIZE is unset: at most OpenLDAP's default size limit
	// (500) and half of Active Directory's MaxPageSize (1000), so it works
	// with both unchanged.
	defaultSyncPageSize = 500
	// defaultSyncMaxRemovalPercent is the removal guard's share when
	// LDAP_SYNC_MAX_REMOVAL_PERCENT is unset: a sync that would remove more
	// than 10% of the directory-managed users (and more than
	// syncRemovalAllowance of them) refuses unless forced.
	defaultSyncMaxRemovalPercent = 10
	// syncRemovalAllowance is how many users a sync may always remove,
	// whatever the share: in a directory of twenty people, two leavers are
	// already 10%, and a guard that trips on ordinary turnover teaches
	// operators to always force it. A run that goes wrong on a small
	// directory removes at most this many users, who are re-created at
	// their next login.
	syncRemovalAllowance = 5
	// noPaging as Config.SyncPageSize makes the sync read without the paged
	// results control, for servers that refuse it (LDAP_SYNC_PAGE_SIZE=0).
	noPaging = -1
	// defaultPoolSize is how many idle connections of each kind (user
	// binds; service-account searches) an Authenticator keeps open when
	// LDAP_AUTH_POOL_SIZE is unset. A login holds a connection for two
	// round trips, so eight serve thousands of logins a second on a LAN,
	// far more than a sign-in page sees, while staying well under any
	// server's connection limits.
	defaultPoolSize = 8
	// defaultPoolIdleTimeout is how long an idle pooled connection is kept
	// when LDAP_AUTH_POOL_IDLE_TIMEOUT is unset: below Active Directory's
	// 900 s MaxConnIdleTime and below the idle timeouts of common load
	// balancers and NAT gateways (Azure 240 s, AWS NLB 350 s), which drop
	// connections without telling either end.
	defaultPoolIdleTimeout = 180 * time.Second
	// noPool, as Config.PoolSize, turns pooling off: every login dials its
	// own connections and closes them (LDAP_AUTH_POOL_SIZE=0).
	noPool = -1
	// defaultMaxUsernameLength and defaultMaxPasswordLength are the longest
	// username and password, in bytes, a login sends to the directory when
	// Config.MaxUsernameLength and Config.MaxPasswordLength are zero.
	// Longer ones are refused before any network I/O.
	defaultMaxUsernameLength = 256
	defaultMaxPasswordLength = 1024
)

// defaultUserFields returns django-python3-ldap's LDAP_AUTH_USER_FIELDS
// default: username=uid, first_name=givenName, last_name=sn, email=mail.
func defaultUserFields() map[string]string {
	return map[string]string{
		"username":   "uid",
		"first_name": "givenName",
		"last_name":  "sn",
		"email":      "mail",
	}
}

// Config configures an [Authenticator], in code or by [LoadConfig]. Sizes:
// 0 is the default, -1 off ("off" in the environment, where 0 is refused).
// Each field names its variable (docs/configuration.md).
type Config struct {
	URLs                  []string             // LDAP_AUTH_URL: ldap:// or ldaps://, tried in order
	UseTLS                bool                 // LDAP_AUTH_USE_TLS: StartTLS before any bind
	SearchBase            string               // LDAP_AUTH_SEARCH_BASE
	ObjectClass           string               // LDAP_AUTH_OBJECT_CLASS: a name or a numeric OID
	UserFields            map[string]string    // LDAP_AUTH_USER_FIELDS: field to attribute; "username" required
	ActiveDirectoryDomain string               // LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN
	ConnectTimeout        time.Duration        // LDAP_AUTH_CONNECT_TIMEOUT (whole seconds there)
	ReceiveTimeout        time.Duration        // LDAP_AUTH_RECEIVE_TIMEOUT (whole seconds there)
	HedgeDelay            time.Duration        // code only: a slow connect starts one to the next server (1 s)
	PoolSize              int                  // LDAP_AUTH_POOL_SIZE: idle connections kept per kind (8)
	PoolIdleTimeout       time.Duration        // LDAP_AUTH_POOL_IDLE_TIMEOUT (whole seconds there)
	FormatUsername        UsernameFormatter    // LDAP_AUTH_FORMAT_USERNAME (OpenLDAPFormatter)
	SearchFilters         SearchFilterBuilder  // LDAP_AUTH_FORMAT_SEARCH_FILTERS (DefaultFilters)
	SyncRelations         RelationSyncer       // LDAP_AUTH_SYNC_USER_RELATIONS (NoRelations)
	OrganisationID        string               // LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID
	SyncedGroups          []string             // LDAP_SYNCED_GROUPS: group DNs
	LoginGroup            string               // LDAP_LOGIN_GROUP: a group DN
	SyncUsername          string               // LDAP_SYNC_USER_USERNAME: a DN, or a name for FormatUsername
	SyncPassword          string               // LDAP_SYNC_USER_PASSWORD
	SyncPageSize          int                  // LDAP_SYNC_PAGE_SIZE (500)
	SyncMaxRemovalPercent int                  // LDAP_SYNC_MAX_REMOVAL_PERCENT: the removal guard, 1 to 100 (10)
	ConnectionUsername    string               // LDAP_AUTH_CONNECTION_USERNAME: the service account, verbatim
	ConnectionPassword    string               // LDAP_AUTH_CONNECTION_PASSWORD
	SearchThenBind        bool                 // LDAP_AUTH_SEARCH_THEN_BIND
	MaxUsernameLength     int                  // code only, in bytes (256)
	MaxPasswordLength     int                  // code only, in bytes (1024)
	NestedGroups          NestedGroups         // LDAP_AUTH_NESTED_GROUPS
	ExcludeDisabled       bool                 // LDAP_AUTH_EXCLUDE_DISABLED
	DirectoryType         DirectoryType        // LDAP_AUTH_DIRECTORY_TYPE
	TLSCAFile             string               // LDAP_AUTH_TLS_CA_FILE
	InsecureSkipVerify    bool                 // LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY: for tests only
	TLSConfig             *tls.Config          // code only: base TLS configuration, cloned
	Store                 UserStore            // users, groups, memberships; nil stores nothing
	Logger                *slog.Logger         // nil discards; never given a password
	MeterProvider         metric.MeterProvider // nil: the otel global
	TracerProvider        trace.TracerProvider // nil: the otel global
	TraceUsernames        bool                 // the username typed on spans

	// loginGroupTerm, set only on the sync's own copy, replaces the
	// login-group term of [LoginGroupFilters]: with NestedGroupsWalk, the
	// memberOf terms of every group nested in the login group
	// (Authenticator.Sync, nestedLoginTerm).
	loginGroupTerm string
}

// Environment variable names read by [LoadConfig].
const (
	envURL                = "LDAP_AUTH_URL"
	envUseTLS             = "LDAP_AUTH_USE_TLS"
	envSearchBase         = "LDAP_AUTH_SEARCH_BASE"
	envObjectClass        = "LDAP_AUTH_OBJECT_CLASS"
	envUserFields         = "LDAP_AUTH_USER_FIELDS"
	envADDomain           = "LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN"
	envConnectTimeout     = "LDAP_AUTH_CONNECT_TIMEOUT"
	envReceiveTimeout     = "LDAP_AUTH_RECEIVE_TIMEOUT"
	envPoolSize           = "LDAP_AUTH_POOL_SIZE"
	envPoolIdleTimeout    = "LDAP_AUTH_POOL_IDLE_TIMEOUT"
	envFormatUsername     = "LDAP_AUTH_FORMAT_USERNAME"
	envOrganisationID     = "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"
	envSyncRelations      = "LDAP_AUTH_SYNC_USER_RELATIONS"
	envSearchFilters      = "LDAP_AUTH_FORMAT_SEARCH_FILTERS"
	envSyncedGroups       = "LDAP_SYNCED_GROUPS"
	envLoginGroup         = "LDAP_LOGIN_GROUP"
	envSyncUsername       = "LDAP_SYNC_USER_USERNAME"
	envSyncPassword       = "LDAP_SYNC_USER_PASSWORD"
	envSyncPageSize       = "LDAP_SYNC_PAGE_SIZE"
	envSyncMaxRemoval     = "LDAP_SYNC_MAX_REMOVAL_PERCENT"
	envConnectionUsername = "LDAP_AUTH_CONNECTION_USERNAME"
	envConnectionPassword = "LDAP_AUTH_CONNECTION_PASSWORD"
	envTLSCAFile          = "LDAP_AUTH_TLS_CA_FILE"
	envInsecureSkipVerify = "LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY"
	envNestedGroups       = "LDAP_AUTH_NESTED_GROUPS"
	envExcludeDisabled    = "LDAP_AUTH_EXCLUDE_DISABLED"
	envDirectoryType      = "LDAP_AUTH_DIRECTORY_TYPE"
	envSearchThenBind     = "LDAP_AUTH_SEARCH_THEN_BIND"
)

// ConfigFromEnv is LoadConfig(os.LookupEnv).
func ConfigFromEnv() (*Config, error) {
	return LoadConfig(os.LookupEnv)
}

// LoadConfig reads the configuration through lookup (os.LookupEnv, or a map),
// applies the defaults and validates it. The error joins one [*ConfigError]
// per bad variable, LDAP_AUTH_URL unset included; secrets are never shown.
func LoadConfig(lookup func(string) (string, bool)) (*Config, error) {
	cfg := &Config{
		SearchBase:      defaultSearchBase,
		ObjectClass:     defaultObjectClass,
		UserFields:      defaultUserFields(),
		ConnectTimeout:  defaultConnectTimeout,
		ReceiveTimeout:  defaultReceiveTimeout,
		PoolSize:        defaultPoolSize,
		PoolIdleTimeout: defaultPoolIdleTimeout,
	}
	var errs []error
	if v, _ := lookup(envURL); unquote(strings.TrimSpace(v)) == "" {
		errs = append(errs, &ConfigError{Variables: []string{envURL}, Problem: "not set: LDAP login is off"})
	}
	for _, e := range envVars {
		v, _ := lookup(e.name)
		if !e.secret { // passwords are taken verbatim
			v = unquote(strings.TrimSpace(v))
		}
		if v == "" {
			continue
		}
		if err := e.set(cfg, v); err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				err = &ConfigError{Variables: []string{e.name}, Problem: err.Error()}
			}
			errs = append(errs, err)
		}
	}
	// Value and cross-variable checks, skipping any that involve a variable
	// already reported.
	_, problems := cfg.parse()
	errs = append(errs, unreported(errs, problems)...)
	if len(errs) > 0 {
		return cfg, errors.Join(errs...)
	}
	return cfg, nil
}

// unreported returns the problems that involve no variable already
// reported in errs.
func unreported(errs []error, problems []*ConfigError) []error {
	reported := map[string]bool{}
	for _, e := range errs {
		var ce *ConfigError
		if errors.As(e, &ce) {
			reported[ce.Variables[0]] = true
		}
	}
	var out []error
	for _, e := range problems {
		if !slices.ContainsFunc(e.Variables, func(v string) bool { return reported[v] }) {
			out = append(out, e)
		}
	}
	return out
}

// envVar is an environment variable [LoadConfig] reads: set stores its
// value, which is not empty, into the Config, or says why it cannot.
type envVar struct {
	name   string
	secret bool // taken verbatim: neither trimmed nor unquoted
	set    func(c *Config, v string) error
}

// envVars are the variables LoadConfig reads, in the order it reports
// their problems.
var envVars = []envVar{
	{name: envURL, set: func(c *Config, v string) error { c.URLs = splitURLs(v); return nil }},
	envText(envSearchBase, func(c *Config) *string { return &c.SearchBase }),
	envText(envObjectClass, func(c *Config) *string { return &c.ObjectClass }),
	{name: envUserFields, set: func(c *Config, v string) error {
		fields, err := parseUserFields(v)
		if err == nil {
			c.UserFields = fields
		}
		return err
	}},
	envBool(envUseTLS, func(c *Config) *bool { return &c.UseTLS }),
	envBool(envInsecureSkipVerify, func(c *Config) *bool { return &c.InsecureSkipVerify }),
	envBool(envExcludeDisabled, func(c *Config) *bool { return &c.ExcludeDisabled }),
	envBool(envSearchThenBind, func(c *Config) *bool { return &c.SearchThenBind }),
	envSeconds(envConnectTimeout, func(c *Config) *time.Duration { return &c.ConnectTimeout }),
	envSeconds(envReceiveTimeout, func(c *Config) *time.Duration { return &c.ReceiveTimeout }),
	envSeconds(envPoolIdleTimeout, func(c *Config) *time.Duration { return &c.PoolIdleTimeout }),
	envCount(envSyncPageSize, "entries", "paging", defaultSyncPageSize, func(c *Config) *int { return &c.SyncPageSize }),
	{name: envSyncMaxRemoval, set: func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("%q is not a whole percentage from 1 to 100", v)
		}
		c.SyncMaxRemovalPercent = n
		return nil
	}},
	envCount(envPoolSize, "connections", "pooling", defaultPoolSize, func(c *Config) *int { return &c.PoolSize }),
	{name: envOrganisationID, set: func(c *Config, v string) error {
		// Flagsmith reads it as an integer: refuse what it would refuse,
		// here rather than at the first login. Code may set any string.
		c.OrganisationID = v
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive whole number that fits in 64 bits (Flagsmith reads it as an organisation's integer ID)", v)
		}
		c.OrganisationID = strconv.FormatInt(n, 10)
		return nil
	}},
	{name: envSyncedGroups, set: func(c *Config, v string) error {
		for _, item := range strings.Split(v, ":") {
			if item = strings.TrimSpace(item); item != "" {
				c.SyncedGroups = append(c.SyncedGroups, item)
			}
		}
		return nil
	}},
	{name: envDirectoryType, set: func(c *Config, v string) (err error) {
		c.DirectoryType, err = parseDirectoryType(v)
		return err
	}},
	{name: envNestedGroups, set: func(c *Config, v string) (err error) {
		c.NestedGroups, err = parseNestedGroups(v)
		return err
	}},
	{name: envFormatUsername, set: func(c *Config, v string) (err error) {
		c.FormatUsername, err = lookupCallable(envFormatUsername, v, usernameFormatters)
		return err
	}},
	{name: envSearchFilters, set: func(c *Config, v string) (err error) {
		c.SearchFilters, err = lookupCallable(envSearchFilters, v, filterBuilders)
		return err
	}},
	{name: envSyncRelations, set: func(c *Config, v string) (err error) {
		c.SyncRelations, err = lookupCallable(envSyncRelations, v, relationSyncers)
		return err
	}},
	envText(envADDomain, func(c *Config) *string { return &c.ActiveDirectoryDomain }),
	envText(envLoginGroup, func(c *Config) *string { return &c.LoginGroup }),
	envText(envSyncUsername, func(c *Config) *string { return &c.SyncUsername }),
	envText(envConnectionUsername, func(c *Config) *string { return &c.ConnectionUsername }),
	envText(envTLSCAFile, func(c *Config) *string { return &c.TLSCAFile }),
	{name: envSyncPassword, secret: true, set: func(c *Config, v string) error { c.SyncPassword = v; return nil }},
	{name: envConnectionPassword, secret: true, set: func(c *Config, v string) error { c.ConnectionPassword = v; return nil }},
}

// envText reads a string variable.
func envText(name string, field func(*Config) *string) envVar {
	return envVar{name: name, set: func(c *Config, v string) error { *field(c) = v; return nil }}
}

// envBool reads a boolean variable (see parseBool).
func envBool(name string, field func(*Config) *bool) envVar {
	return envVar{name: name, set: func(c *Config, v string) (err error) {
		*field(c), err = parseBool(v)
		return err
	}}
}

// envSeconds reads a positive whole number of seconds.
func envSeconds(name string, field func(*Config) *time.Duration) envVar {
	return envVar{name: name, set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive whole number of seconds", v)
		}
		*field(c) = time.Duration(n) * time.Second
		return nil
	}}
}

// envCount reads a whole number of what: a positive size, or off (or -1)
// to turn the feature off. 0 is refused, since in code it means the default
// def.
func envCount(name, what, feature string, def int, field func(*Config) *int) envVar {
	return envVar{name: name, set: func(c *Config, v string) error {
		if strings.EqualFold(v, "off") {
			v = "-1"
		}
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < -1:
			return fmt.Errorf("%q is not a whole number of %s, or off", v, what)
		case n == 0:
			// In code 0 is the default: an env file must not mean something else.
			return fmt.Errorf("0 is refused: use off to disable %s, or leave it unset for the default %d", feature, def)
		}
		*field(c) = n
		return nil
	}}
}

// Validate reports every problem with c, one [*ConfigError] each, joined;
// New calls it.
func (c *Config) Validate() error {
	_, problems := c.parse()
	return joinProblems(problems)
}

// joinProblems joins problems into one error, nil without any.
func joinProblems(problems []*ConfigError) error {
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// parsed is what validation parses and New keeps, so that nothing is
// parsed or read twice.
type parsed struct {
	servers []server       // URLs, in order
	rootCAs *x509.CertPool // from TLSCAFile; nil without one
}

// problems collects the configuration errors of one validation.
type problems []*ConfigError

func (p *problems) add(problem string, vars ...string) { *p = append(*p, configErr(problem, vars...)) }

// parse checks c, one concern at a time, and returns what it parsed with
// every problem found.
func (c *Config) parse() (parsed, []*ConfigError) {
	var p parsed
	var errs problems
	usesTLS := c.parseServers(&p, &errs)
	c.checkEntries(&errs)
	c.checkLimits(&errs)
	c.checkLoginFilters(&errs)
	c.checkDirectoryFeatures(&errs)
	c.checkRelations(&errs)
	c.checkAccounts(&errs)
	p.rootCAs = c.loadTrust(usesTLS, &errs)
	return p, errs
}

// parseServers parses the URLs into p, and reports whether any connection
// uses TLS.
func (c *Config) parseServers(p *parsed, errs *problems) (usesTLS bool) {
	if len(c.URLs) == 0 {
		*errs = append(*errs, &ConfigError{Variables: []string{envURL}, Problem: "no server URL"})
	}
	usesTLS = c.UseTLS
	for _, u := range c.URLs {
		s, err := parseServer(u)
		if err != nil {
			errs.add(err.Error(), envURL)
			continue
		}
		p.servers = append(p.servers, s)
		usesTLS = usesTLS || s.ldaps
		// UseTLS with an ldaps:// URL is redundant, not a mistake: TLS is
		// on from the start and StartTLS is not attempted there (New
		// notes it in the log).
	}
	return usesTLS
}

// checkEntries checks where and what the user entries are.
func (c *Config) checkEntries(errs *problems) {
	if c.ObjectClass != "" && !validObjectClass(c.ObjectClass) {
		errs.add(fmt.Sprintf("%q is not an object class name (a name such as inetOrgPerson or user, or a numeric OID such as 2.5.6.6); anything else would go into every search filter", c.ObjectClass), envObjectClass)
	}
	if c.SearchBase != "" {
		if _, err := ldap.ParseDN(c.SearchBase); err != nil {
			errs.add(fmt.Sprintf("%q is not a DN: %v", c.SearchBase, err), envSearchBase)
		}
	}
	if c.UserFields != nil {
		if attr := c.UserFields["username"]; attr == "" {
			errs.add("no username field: it names the attribute users log in with (for example username=uid)", envUserFields)
		}
	}
}

// checkLimits checks the timeouts, sizes and lengths.
func (c *Config) checkLimits(errs *problems) {
	if c.ConnectTimeout < 0 {
		errs.add("negative", envConnectTimeout)
	}
	if c.ReceiveTimeout < 0 {
		errs.add("negative", envReceiveTimeout)
	}
	if c.HedgeDelay < noHedge {
		errs.add("negative: use a positive delay, 0 for the default or -1 to turn hedging off", "Config.HedgeDelay")
	}
	if c.SyncPageSize < noPaging || c.SyncPageSize > math.MaxInt32 {
		errs.add(fmt.Sprintf("page size %d out of range (a positive size, 0 for the default, or -1 to turn paging off)", c.SyncPageSize), envSyncPageSize)
	}
	if c.SyncMaxRemovalPercent < 0 || c.SyncMaxRemovalPercent > 100 {
		errs.add(fmt.Sprintf("%d is not a percentage from 1 to 100 (0 for the default)", c.SyncMaxRemovalPercent), envSyncMaxRemoval)
	}
	if c.PoolSize < noPool {
		errs.add(fmt.Sprintf("%d: use a positive size, 0 for the default or -1 to turn pooling off", c.PoolSize), envPoolSize)
	}
	if c.PoolIdleTimeout < 0 {
		errs.add("negative", envPoolIdleTimeout)
	}
	if c.MaxUsernameLength < 0 || c.MaxPasswordLength < 0 {
		errs.add("Config.MaxUsernameLength and Config.MaxPasswordLength must not be negative (0 for the defaults)", "Config.MaxUsernameLength", "Config.MaxPasswordLength")
	}
}

// checkLoginFilters checks the username formatter and the login group
// against the search filter builder.
func (c *Config) checkLoginFilters(errs *problems) {
	if f, ok := c.FormatUsername.(domainFormatter); ok && f.needsDomain() && c.ActiveDirectoryDomain == "" {
		errs.add("the principal formatter needs a domain (user@domain)", envADDomain, envFormatUsername)
	}
	if c.LoginGroup != "" {
		if _, err := ldap.ParseDN(c.LoginGroup); err != nil {
			errs.add(fmt.Sprintf("%q is not a DN: %v", c.LoginGroup, err), envLoginGroup)
		} else if c.usesDefaultFilters() {
			errs.add("set, but the search filters ignore it: set LDAP_AUTH_FORMAT_SEARCH_FILTERS to flagsmith_ldap.ldap.login_group_search_filter", envLoginGroup, envSearchFilters)
		}
	}
	if c.LoginGroup == "" && c.usesLoginGroupFilters() {
		// Flagsmith then adds no filter and lets everyone in: a misspelt
		// group variable would open the door.
		errs.add("not set, but the login-group filter needs it: without a group it would let every user log in", envLoginGroup, envSearchFilters)
	}
}

// checkDirectoryFeatures checks nested groups, the directory type and the
// exclusion of disabled accounts.
func (c *Config) checkDirectoryFeatures(errs *problems) {
	if !c.NestedGroups.valid() {
		errs.add(fmt.Sprintf("%q is not one of off, active_directory, walk", string(c.NestedGroups)), envNestedGroups)
	}
	if c.NestedGroups != nestedGroupsOff && c.NestedGroups.valid() && c.LoginGroup == "" && len(c.SyncedGroups) == 0 {
		errs.add("set, but there is neither a login group nor a synced group to resolve", envNestedGroups, envLoginGroup, envSyncedGroups)
	}
	if !c.DirectoryType.valid() {
		errs.add(fmt.Sprintf("%q is not one of auto, active_directory, 389ds, openldap, other", string(c.DirectoryType)), envDirectoryType)
	} else if c.DirectoryType != directoryAuto && c.NestedGroups.valid() {
		var cerr *ConfigError
		if err := directoryFits(c, c.DirectoryType); errors.As(err, &cerr) {
			vars := cerr.Variables
			if !slices.Contains(vars, envDirectoryType) {
				vars = append(vars, envDirectoryType)
			}
			errs.add(cerr.Problem, vars...)
		}
	}
	if c.ExcludeDisabled && !c.usesDefaultFilters() && !c.usesLoginGroupFilters() {
		errs.add("set, but the search filter builder is not a built-in one, which alone add the filter", envExcludeDisabled, envSearchFilters)
	}
}

// checkRelations checks the synced groups and the organisation against the
// relation syncer.
func (c *Config) checkRelations(errs *problems) {
	for i, g := range c.SyncedGroups {
		if _, err := ldap.ParseDN(strings.TrimSpace(g)); err != nil || strings.TrimSpace(g) == "" {
			errs.add(fmt.Sprintf("item %d, %q, is not a DN", i+1, g), envSyncedGroups)
		}
	}
	if c.usesGroupSyncer() && c.OrganisationID == "" {
		errs.add("not set, but the group syncer adds every user to it", envOrganisationID, envSyncRelations)
	}
	if c.usesNoRelations() {
		const ignored = "set, but the relation syncer ignores it: set LDAP_AUTH_SYNC_USER_RELATIONS to flagsmith_ldap.ldap.sync_user_groups"
		if len(c.SyncedGroups) > 0 {
			errs.add(ignored, envSyncedGroups, envSyncRelations)
		}
		if c.OrganisationID != "" {
			errs.add(ignored, envOrganisationID, envSyncRelations)
		}
	}
}

// checkAccounts checks the service and sync accounts.
func (c *Config) checkAccounts(errs *problems) {
	checkPair(errs, c.ConnectionUsername, c.ConnectionPassword, "service-account", envConnectionUsername, envConnectionPassword)
	if c.SearchThenBind && c.ConnectionUsername == "" {
		errs.add("set, but there is no service account to search with: set LDAP_AUTH_CONNECTION_USERNAME and LDAP_AUTH_CONNECTION_PASSWORD", envSearchThenBind, envConnectionUsername)
	}
	checkPair(errs, c.SyncUsername, c.SyncPassword, "sync", envSyncUsername, envSyncPassword)
}

// checkPair reports a username without its password, or the reverse.
func checkPair(errs *problems, username, password, what, usernameVar, passwordVar string) {
	switch {
	case username == "" && password != "":
		errs.add("not set, but a "+what+" password is", usernameVar, passwordVar)
	case username != "" && password == "":
		errs.add("not set, but a "+what+" username is", passwordVar, usernameVar)
	}
}

// loadTrust reads the CA file, if any, and checks that TLS uses it.
func (c *Config) loadTrust(usesTLS bool, errs *problems) *x509.CertPool {
	if c.TLSCAFile == "" {
		return nil
	}
	pool, err := loadCAFile(c.TLSCAFile)
	switch {
	case err != nil:
		*errs = append(*errs, &ConfigError{Variables: []string{envTLSCAFile}, Problem: err.Error(), Err: err})
	case c.InsecureSkipVerify:
		errs.add("a CA file is set but verification is turned off", envInsecureSkipVerify, envTLSCAFile)
	case !usesTLS:
		errs.add("set, but no connection uses TLS: use ldaps:// or LDAP_AUTH_USE_TLS=true", envTLSCAFile, envURL, envUseTLS)
	}
	return pool
}

// validObjectClass reports whether name is an object class name as RFC
// 4512 writes one: a descriptor (a letter, then letters, digits and
// hyphens) or a numeric OID (numbers without leading zeros, separated by
// dots).
func validObjectClass(name string) bool {
	isDigit := func(r byte) bool { return r >= '0' && r <= '9' }
	isLetter := func(r byte) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
	if isLetter(name[0]) {
		for i := 1; i < len(name); i++ {
			if !isLetter(name[i]) && !isDigit(name[i]) && name[i] != '-' {
				return false
			}
		}
		return true
	}
	parts := strings.Split(name, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 1 && p[0] == '0' {
			return false
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
	}
	return true
}

// noteTLS logs, once, at Info, that LDAP_AUTH_USE_TLS does not apply to the
// ldaps:// servers: a Flagsmith env file may set both, which is redundant
// rather than wrong.
func noteTLS(cfg *Config, servers []server) {
	if !cfg.UseTLS {
		return
	}
	var ldaps []string
	for _, s := range servers {
		if s.ldaps {
			ldaps = append(ldaps, s.url)
		}
	}
	if len(ldaps) > 0 {
		cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo,
			"ldapauth: LDAP_AUTH_USE_TLS applies to ldap:// servers only: ldaps:// servers use TLS from the start, StartTLS is not attempted there",
			slog.String("servers", strings.Join(ldaps, " ")))
	}
}

// usesDefaultFilters reports whether the search filters are
// [DefaultFilters]' (unset, or declared through [FilterTerms]).
func (c *Config) usesDefaultFilters() bool {
	if c.SearchFilters == nil {
		return true
	}
	t, ok := c.SearchFilters.(FilterTerms)
	return ok && !t.LoginGroupTerm()
}

// usesLoginGroupFilters reports whether the search filters are
// [LoginGroupFilters]' (declared through [FilterTerms]).
func (c *Config) usesLoginGroupFilters() bool {
	t, ok := c.SearchFilters.(FilterTerms)
	return ok && t.LoginGroupTerm()
}

// usesGroupSyncer reports whether the relation syncer keeps the synced
// groups, as [SyncUserGroups] (declared through [GroupSyncer]).
func (c *Config) usesGroupSyncer() bool {
	g, ok := c.SyncRelations.(GroupSyncer)
	return ok && g.SyncsGroups()
}

// usesNoRelations reports whether the relation syncer ignores the synced
// groups and the organisation, as [NoRelations] (unset, or declared through
// [GroupSyncer]).
func (c *Config) usesNoRelations() bool {
	if c.SyncRelations == nil {
		return true
	}
	g, ok := c.SyncRelations.(GroupSyncer)
	return ok && !g.SyncsGroups()
}

// unquote removes one pair of matching surrounding quotes, which an env
// file passed through docker --env-file keeps (the Flagsmith docs quote some
// values). Secrets are never unquoted.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return strings.TrimSpace(v[1 : len(v)-1])
	}
	return v
}

// splitURLs splits LDAP_AUTH_URL on white space and commas.
func splitURLs(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// parseUserFields parses "field=attribute,field=attribute".
func parseUserFields(v string) (map[string]string, error) {
	fields := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		field, attr, ok := strings.Cut(pair, "=")
		field, attr = strings.TrimSpace(field), strings.TrimSpace(attr)
		if !ok || field == "" || attr == "" {
			return nil, fmt.Errorf("%q is not field=attribute", pair)
		}
		if _, dup := fields[field]; dup {
			return nil, fmt.Errorf("field %q is mapped twice", field)
		}
		fields[field] = attr
	}
	if fields["username"] == "" {
		return nil, errors.New("no username field: it names the attribute users log in with (for example username=uid)")
	}
	return fields, nil
}

// parseBool accepts the spellings django-environ takes as true, and their
// opposites; anything else is an error rather than a silent false.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "on", "ok", "y", "yes", "1", "t":
		return true, nil
	case "false", "off", "n", "no", "0", "f":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true/false, yes/no, on/off, 1/0)", v)
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// callable maps the names an env file may hold to a constructor.
type callable[T any] struct {
	names []string
	make  func() T
}

func lookupCallable[T any](variable, name string, table []callable[T]) (T, error) {
	var accepted []string
	for _, c := range table {
		if slices.Contains(c.names, name) {
			return c.make(), nil
		}
		accepted = append(accepted, c.names...)
	}
	var zero T
	return zero, configErr(fmt.Sprintf("unknown callable %q; accepted: %s", name, strings.Join(accepted, ", ")), variable)
}

var usernameFormatters = []callable[UsernameFormatter]{
	{[]string{"django_python3_ldap.utils.format_username_openldap", "openldap"}, func() UsernameFormatter { return OpenLDAPFormatter{} }},
	{[]string{"django_python3_ldap.utils.format_username_active_directory", "active_directory"}, func() UsernameFormatter { return ActiveDirectoryFormatter{} }},
	{[]string{"django_python3_ldap.utils.format_username_active_directory_principal", "active_directory_principal"}, func() UsernameFormatter { return ActiveDirectoryPrincipalFormatter{} }},
}

var filterBuilders = []callable[SearchFilterBuilder]{
	{[]string{"django_python3_ldap.utils.format_search_filters", "default"}, func() SearchFilterBuilder { return DefaultFilters{} }},
	{[]string{"flagsmith_ldap.ldap.login_group_search_filter", "custom_auth.ldap.login_group_search_filter", "flagsmith.ldap.login_group_search_filter", "login_group"}, func() SearchFilterBuilder { return LoginGroupFilters{} }},
}

var relationSyncers = []callable[RelationSyncer]{
	{[]string{"django_python3_ldap.utils.sync_user_relations", "none"}, func() RelationSyncer { return NoRelations{} }},
	{[]string{"flagsmith_ldap.ldap.sync_user_groups", "custom_auth.ldap.sync_user_groups", "flagsmith.ldap.sync_user_groups", "sync_user_groups"}, func() RelationSyncer { return SyncUserGroups{} }},
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c *Config) withDefaults() Config {
	cp := *c
	cp.URLs = slices.Clone(c.URLs)
	cp.SyncedGroups = slices.Clone(c.SyncedGroups)
	if cp.SearchBase == "" {
		cp.SearchBase = defaultSearchBase
	}
	if cp.ObjectClass == "" {
		cp.ObjectClass = defaultObjectClass
	}
	if c.UserFields == nil {
		cp.UserFields = defaultUserFields()
	} else {
		cp.UserFields = make(map[string]string, len(c.UserFields))
		for k, v := range c.UserFields {
			cp.UserFields[k] = v
		}
	}
	if cp.ConnectTimeout == 0 {
		cp.ConnectTimeout = defaultConnectTimeout
	}
	if cp.ReceiveTimeout == 0 {
		cp.ReceiveTimeout = defaultReceiveTimeout
	}
	if cp.HedgeDelay == 0 {
		cp.HedgeDelay = defaultHedgeDelay
	}
	if cp.SyncPageSize == 0 {
		cp.SyncPageSize = defaultSyncPageSize
	}
	if cp.SyncMaxRemovalPercent == 0 {
		cp.SyncMaxRemovalPercent = defaultSyncMaxRemovalPercent
	}
	if cp.PoolSize == 0 {
		cp.PoolSize = defaultPoolSize
	}
	if cp.PoolIdleTimeout == 0 {
		cp.PoolIdleTimeout = defaultPoolIdleTimeout
	}
	if cp.MaxUsernameLength == 0 {
		cp.MaxUsernameLength = defaultMaxUsernameLength
	}
	if cp.MaxPasswordLength == 0 {
		cp.MaxPasswordLength = defaultMaxPasswordLength
	}
	if cp.FormatUsername == nil {
		cp.FormatUsername = OpenLDAPFormatter{}
	}
	if cp.SearchFilters == nil {
		cp.SearchFilters = DefaultFilters{}
	}
	if cp.SyncRelations == nil {
		cp.SyncRelations = NoRelations{}
	}
	if cp.Logger == nil {
		cp.Logger = slog.New(slog.DiscardHandler)
	}
	return cp
}

// usernameAttribute is the attribute that holds the username.
func (c *Config) usernameAttribute() string {
	if a := c.UserFields["username"]; a != "" {
		return a
	}
	return "uid"
}
