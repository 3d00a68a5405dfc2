package benchmarks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
	capldap "github.com/hashicorp/cap/ldap"
	ldapclient "github.com/jtblin/go-ldap-client"
	adauth "github.com/korylprince/go-ad-auth/v3"

	"github.com/go-ldapauth/ldapauth"
)

// LoginFunc logs username in with password and returns the mail attribute
// read from the user's entry. A refused login is an error.
type LoginFunc func(ctx context.Context, username, password string) (mail string, err error)

// ErrRefused is returned by a contender whose library reports a refused
// login as false rather than as an error.
var ErrRefused = errors.New("benchmarks: login refused")

// Contender is one way to log a user in.
type Contender struct {
	// Name names it in tables and benchmark names.
	Name string
	// Setup says, in a few words, how it is configured and what one login
	// costs on the wire.
	Setup string
	// Open prepares the contender against t. Its Session gives each worker
	// goroutine its own login function.
	Open func(t *Target) (*Session, error)
}

// Session is a contender opened against one target.
type Session struct {
	// Worker returns the login function of one worker goroutine. Login
	// functions of different workers may run concurrently; one worker's
	// is called from one goroutine at a time.
	Worker func() (LoginFunc, error)

	mu      sync.Mutex
	closers []func()
}

func (s *Session) onClose(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, f)
}

// Close releases what the session and its workers hold.
func (s *Session) Close() {
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Floor is the name of the contender that every ratio is taken against:
// raw go-ldap, bind and search on a connection each worker keeps open.
const Floor = "floor"

// LDAPAuthVariant is one ldapauth configuration to measure: the target's
// environment variables (as a Flagsmith deployment sets them) plus Env,
// and the service account if Service is set.
type LDAPAuthVariant struct {
	Name    string
	Service bool
	Env     map[string]string
}

// DefaultLDAPAuthVariants are the ldapauth configurations measured by
// default: the default configuration (pooled, LDAP_AUTH_POOL_SIZE unset),
// the login search run as a service account (pooled too; its search runs
// beside the user's bind), and both with pooling turned off
// (LDAP_AUTH_POOL_SIZE=off: dial per login).
func DefaultLDAPAuthVariants() []LDAPAuthVariant {
	nopool := func() map[string]string { return map[string]string{"LDAP_AUTH_POOL_SIZE": "off"} }
	return []LDAPAuthVariant{
		{Name: "ldapauth"},
		{Name: "ldapauth-svc", Service: true},
		{Name: "ldapauth-nopool", Env: nopool()},
		{Name: "ldapauth-svc-nopool", Service: true, Env: nopool()},
	}
}

// targetVariables are set by the target (or by svc): a variant that set
// them would no longer measure the target it is labelled with.
var targetVariables = []string{
	"LDAP_AUTH_URL", "LDAP_AUTH_SEARCH_BASE", "LDAP_AUTH_OBJECT_CLASS", "LDAP_AUTH_USE_TLS", "LDAP_AUTH_TLS_CA_FILE",
	"LDAP_AUTH_CONNECTION_USERNAME", "LDAP_AUTH_CONNECTION_PASSWORD",
}

// ldapauthReads returns the environment variables LoadConfig reads, found
// by watching it read an empty environment (it looks up every variable it
// knows, set or not). A variant may only set these: a variable ldapauth
// ignores would label a contender with a setting it does not have.
var ldapauthReads = sync.OnceValue(func() map[string]bool {
	read := map[string]bool{}
	_, _ = ldapauth.LoadConfig(func(k string) (string, bool) { read[k] = true; return "", false })
	return read
})

// ParseLDAPAuthVariant parses "name:KEY=VALUE,KEY=VALUE" (the Env of the
// variant); a bare "svc" among the pairs sets Service. It refuses a
// variable that ldapauth's LoadConfig does not read, one the target sets
// (use svc for the service account), and a value LoadConfig refuses.
func ParseLDAPAuthVariant(s string) (LDAPAuthVariant, error) {
	name, rest, _ := strings.Cut(s, ":")
	v := LDAPAuthVariant{Name: name, Env: map[string]string{}}
	if name == "" {
		return v, fmt.Errorf("benchmarks: ldapauth variant %q: no name", s)
	}
	for pair := range strings.SplitSeq(rest, ",") {
		switch k, val, ok := strings.Cut(pair, "="); {
		case pair == "":
		case pair == "svc":
			v.Service = true
		case !ok || !strings.HasPrefix(k, "LDAP_"):
			return v, fmt.Errorf("benchmarks: ldapauth variant %q: %q is not svc or LDAP_...=VALUE", s, pair)
		case !ldapauthReads()[k]:
			return v, fmt.Errorf("benchmarks: ldapauth variant %q: ldapauth does not read %s (LoadConfig reads %s)",
				s, k, strings.Join(slices.Sorted(maps.Keys(ldapauthReads())), ", "))
		case slices.Contains(targetVariables, k):
			return v, fmt.Errorf("benchmarks: ldapauth variant %q: %s is set by the target (svc sets the service account)", s, k)
		default:
			v.Env[k] = val
		}
	}
	// The values must load: check them against a placeholder target.
	if _, err := v.config(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1:389"}); err != nil {
		return v, fmt.Errorf("benchmarks: ldapauth variant %q: %w", s, err)
	}
	return v, nil
}

// config loads v's configuration over the target's variables env. Every
// variable of v must be read by LoadConfig, or the contender would be
// labelled with a setting it does not have.
func (v LDAPAuthVariant) config(env map[string]string) (*ldapauth.Config, error) {
	env = maps.Clone(env)
	for k, val := range v.Env {
		if slices.Contains(targetVariables, k) {
			return nil, fmt.Errorf("%s is set by the target", k)
		}
		env[k] = val
	}
	read := map[string]bool{}
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { read[k] = true; val, ok := env[k]; return val, ok })
	if err != nil {
		return nil, err
	}
	for k := range v.Env {
		if !read[k] {
			return nil, fmt.Errorf("ldapauth does not read %s", k)
		}
	}
	return cfg, nil
}

// Contenders returns the contenders: the ldapauth variants, the floor, raw
// go-ldap dialing per login, and the peers.
func Contenders(variants []LDAPAuthVariant) []Contender {
	var cs []Contender
	for _, v := range variants {
		cs = append(cs, ldapauthContender(v))
	}
	return append(cs,
		Contender{Name: Floor, Open: openFloor,
			Setup: "go-ldap v3: bind as the user, subtree search; connection opened once per worker"},
		Contender{Name: "go-ldap-dial", Open: openRawDial,
			Setup: "go-ldap v3: dial (+TLS), bind as the user, subtree search, close"},
		Contender{Name: "cap", Open: func(t *Target) (*Session, error) { return openCap(t, false) },
			Setup: "hashicorp/cap/ldap: dial, bind uid=<user>,<base>, base search of the user's entry"},
		Contender{Name: "cap-svc", Open: func(t *Target) (*Session, error) { return openCap(t, true) },
			Setup: "hashicorp/cap/ldap: dial, bind svc, search, bind user, bind svc, base search of the entry"},
		Contender{Name: "jtblin-svc", Open: openJtblin,
			Setup: "jtblin/go-ldap-client: bind svc, search, bind user, bind svc; connection kept per worker"},
		Contender{Name: "go-ad-auth", Open: openADAuth,
			Setup: "korylprince/go-ad-auth/v3: dial, bind <user>@<domain> (UPN), search userPrincipalName"},
	)
}

// Env returns the ldapauth environment variables for t.
func (t *Target) Env() map[string]string {
	env := map[string]string{
		"LDAP_AUTH_URL":          t.URL,
		"LDAP_AUTH_SEARCH_BASE":  t.SearchBase,
		"LDAP_AUTH_OBJECT_CLASS": t.ObjectClass,
	}
	if t.Mode == StartTLS {
		env["LDAP_AUTH_USE_TLS"] = "true"
	}
	if t.Mode != Plain {
		env["LDAP_AUTH_TLS_CA_FILE"] = t.CAFile
	}
	return env
}

func ldapauthContender(v LDAPAuthVariant) Contender {
	// The setup line says what the configuration does, read back from the
	// loaded Config rather than from the variant's name.
	setup := "ldapauth: LoadConfig from the environment"
	cfg, err := v.config(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1:389"})
	pooled := err == nil && cfg.PoolSize > 0
	if pooled {
		setup += fmt.Sprintf(", pool of %d idle connections per kind", cfg.PoolSize)
	} else {
		setup += ", no pool"
	}
	switch {
	case pooled && v.Service:
		setup += "; pooled: bind as the user on one connection while the svc connection (bound once) searches"
	case pooled:
		setup += "; pooled connection: bind as the user, subtree search"
	case v.Service:
		setup += "; dial (+TLS) twice: bind as the user on one while the other binds svc and searches; close"
	default:
		setup += "; dial (+TLS), bind as the user, subtree search, close"
	}
	if len(v.Env) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(v.Env)) {
			kv = append(kv, k+"="+v.Env[k])
		}
		setup += " (" + strings.Join(kv, ", ") + ")"
	}
	return Contender{Name: v.Name, Setup: setup, Open: func(t *Target) (*Session, error) {
		env := t.Env()
		if v.Service {
			env["LDAP_AUTH_CONNECTION_USERNAME"] = t.ServiceDN
			env["LDAP_AUTH_CONNECTION_PASSWORD"] = t.ServicePassword
		}
		cfg, err := v.config(env)
		if err != nil {
			return nil, fmt.Errorf("benchmarks: ldapauth variant %s: %w", v.Name, err)
		}
		a, err := ldapauth.New(cfg)
		if err != nil {
			return nil, err
		}
		s := &Session{}
		s.onClose(func() { a.Close() })
		login := func(ctx context.Context, username, password string) (string, error) {
			u, err := a.Authenticate(ctx, username, password)
			if err != nil {
				return "", err
			}
			return u.Fields["email"], nil
		}
		// One Authenticator shared by every worker, as it is meant to be used.
		s.Worker = func() (LoginFunc, error) { return login, nil }
		return s, nil
	}}
}

// tlsConfig is the client TLS configuration for t.
func (t *Target) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: t.CAPool, ServerName: t.Host, MinVersion: tls.VersionTLS12}
}

// dial opens a go-ldap connection to t in t's mode.
func (t *Target) dial() (*ldap.Conn, error) {
	if t.Mode == LDAPS {
		return ldap.DialURL(t.URL, ldap.DialWithTLSConfig(t.tlsConfig()))
	}
	c, err := ldap.DialURL(t.URL)
	if err != nil {
		return nil, err
	}
	if t.Mode == StartTLS {
		if err := c.StartTLS(t.tlsConfig()); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// loginAttributes are the attributes ldapauth's login search asks for with
// the default user fields.
var loginAttributes = []string{"uid", "mail", "givenName", "sn", "memberOf"}

// rawLogin is the protocol floor of a login: bind as the user, then the
// login search, on an open connection.
func (t *Target) rawLogin(c *ldap.Conn, username, password string) (string, error) {
	if err := c.Bind("uid="+ldap.EscapeDN(username)+","+t.SearchBase, password); err != nil {
		return "", err
	}
	res, err := c.Search(ldap.NewSearchRequest(t.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false,
		t.UserFilter(ldap.EscapeFilter(username)), loginAttributes, nil))
	if err != nil {
		return "", err
	}
	if len(res.Entries) != 1 {
		return "", fmt.Errorf("benchmarks: %d entries for %s", len(res.Entries), username)
	}
	return res.Entries[0].GetAttributeValue("mail"), nil
}

func openFloor(t *Target) (*Session, error) {
	s := &Session{}
	s.Worker = func() (LoginFunc, error) {
		c, err := t.dial()
		if err != nil {
			return nil, err
		}
		s.onClose(func() { c.Close() })
		return func(_ context.Context, username, password string) (string, error) {
			return t.rawLogin(c, username, password)
		}, nil
	}
	return s, nil
}

func openRawDial(t *Target) (*Session, error) {
	s := &Session{}
	login := func(_ context.Context, username, password string) (string, error) {
		c, err := t.dial()
		if err != nil {
			return "", err
		}
		defer c.Close()
		return t.rawLogin(c, username, password)
	}
	s.Worker = func() (LoginFunc, error) { return login, nil }
	return s, nil
}

// openCap configures hashicorp/cap/ldap as its README does for OpenLDAP:
// UserDN and UserAttr make the bind DN, or, with service, the service
// account finds the user's DN first. A Client keeps its connection in an
// unguarded field, so each worker has its own and each login opens (and
// Close closes) a connection.
func openCap(t *Target, service bool) (*Session, error) {
	conf := &capldap.ClientConfig{
		URLs:         []string{t.URL},
		UserDN:       t.SearchBase,
		UserAttr:     "uid",
		Certificates: []string{string(t.CAPEM)},
		StartTLS:     t.Mode == StartTLS,
		// Read back the entry's attributes, as every contender does.
		IncludeUserAttributes: true,
	}
	if service {
		conf.BindDN, conf.BindPassword = t.ServiceDN, t.ServicePassword
		conf.UserFilter = "(&(objectClass=" + t.ObjectClass + ")({{.UserAttr}}={{.Username}}))"
	}
	s := &Session{}
	s.Worker = func() (LoginFunc, error) {
		c, err := capldap.NewClient(context.Background(), conf)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, username, password string) (string, error) {
			defer c.Close(ctx)
			res, err := c.Authenticate(ctx, username, password)
			if err != nil {
				return "", err
			}
			if !res.Success {
				return "", ErrRefused
			}
			if m := res.UserAttributes["mail"]; len(m) > 0 {
				return m[0], nil
			}
			return "", nil
		}, nil
	}
	return s, nil
}

// openJtblin configures jtblin/go-ldap-client as its README does: a
// service account searches for the user, then the user's bind checks the
// password. Its Client keeps one connection open across logins and is not
// safe for concurrent use: one Client per worker.
func openJtblin(t *Target) (*Session, error) {
	s := &Session{}
	s.Worker = func() (LoginFunc, error) {
		c := &ldapclient.Client{
			Base:         t.SearchBase,
			Host:         t.Host,
			Port:         t.Port,
			UseSSL:       t.Mode == LDAPS,
			SkipTLS:      t.Mode == Plain,
			TLSConfig:    t.tlsConfig(),
			BindDN:       t.ServiceDN,
			BindPassword: t.ServicePassword,
			UserFilter:   "(&(objectClass=" + t.ObjectClass + ")(uid=%s))",
			Attributes:   []string{"uid", "givenName", "sn", "mail"},
		}
		s.onClose(c.Close)
		return func(ctx context.Context, username, password string) (string, error) {
			ok, attrs, err := c.AuthenticateContext(ctx, ldap.EscapeFilter(username), password)
			if err != nil {
				return "", err
			}
			if !ok {
				return "", ErrRefused
			}
			if m := attrs["mail"]; len(m) > 0 {
				return m[0], nil
			}
			return "", nil
		}, nil
	}
	return s, nil
}

// openADAuth configures korylprince/go-ad-auth, which is for Active
// Directory: it binds as <user>@<domain>, the domain taken from the base
// DN's dc= parts, then reads the entry whose userPrincipalName is that.
func openADAuth(t *Target) (*Session, error) {
	sec := map[Mode]adauth.SecurityType{Plain: adauth.SecurityNone, StartTLS: adauth.SecurityStartTLS, LDAPS: adauth.SecurityTLS}[t.Mode]
	conf := &adauth.Config{Server: t.Host, Port: t.Port, BaseDN: t.BaseDN, Security: sec, RootCAs: t.CAPool}
	login := func(_ context.Context, username, password string) (string, error) {
		ok, entry, _, err := adauth.AuthenticateExtended(conf, username, password, []string{"mail"}, nil)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", ErrRefused
		}
		return entry.GetAttributeValue("mail"), nil
	}
	s := &Session{}
	s.Worker = func() (LoginFunc, error) { return login, nil }
	return s, nil
}
