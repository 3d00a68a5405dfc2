package ldapauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// User is a user as the directory holds it at login: Fields has the first
// value of each mapped attribute, Groups the memberOf values (docs/login.md).
type User struct {
	DN              string              `json:"dn"`
	Username        string              `json:"username"`
	Fields          map[string]string   `json:"fields"`
	Groups          []string            `json:"groups,omitempty"`
	Attributes      map[string][]string `json:"attributes,omitempty"`
	PasswordWarning *PasswordWarning    `json:"password_warning,omitempty"`

	hasMemberOf bool
}

func (u *User) clone() *User {
	cp := *u
	cp.Fields = make(map[string]string, len(u.Fields))
	for k, v := range u.Fields {
		cp.Fields[k] = v
	}
	cp.Groups = slices.Clone(u.Groups)
	if u.PasswordWarning != nil {
		w := *u.PasswordWarning
		cp.PasswordWarning = &w
	}
	cp.Attributes = make(map[string][]string, len(u.Attributes))
	for k, v := range u.Attributes {
		cp.Attributes[k] = slices.Clone(v)
	}
	return &cp
}

// Authenticator logs users in. It is safe for concurrent use by multiple
// goroutines and should be reused.
type Authenticator struct {
	cfg     Config
	servers []server
	health  []health // per server, as servers
	now     func() time.Time
	tlsBase *tls.Config
	attrs   []string // attributes the login search asks for
	// syncAttrs are the attributes the sync reads: the username, the
	// mapped fields, memberOf and primaryGroupID (a prefix of attrs).
	syncAttrs []string

	synced     []groupRef // Config.SyncedGroups, parsed
	loginGroup groupRef   // Config.LoginGroup, parsed; dn empty without one
	// groupTokens caches the primaryGroupToken of configured groups, by
	// DN key: a group's RID never changes.
	groupTokens sync.Map
	// netbios caches the NetBIOS names of Active Directory domains, by
	// domain DN key, for the identity proof.
	netbios sync.Map
	// noWhoAmI: the server answered that it does not support Who Am I.
	noWhoAmI atomic.Bool

	// life ends at Close (lifeEnd); background counts the service-account
	// searches abandoned by failed logins, which Close waits for.
	life       context.Context
	lifeEnd    context.CancelFunc
	background sync.WaitGroup
	bgMu       sync.Mutex // orders background.Add before Close's Wait
	bgClosed   bool

	// detected is the directory type read from the root DSE
	// (Config.DirectoryType auto), nil until read.
	detected atomic.Pointer[DirectoryType]

	users   *pool // connections users bind on
	service *pool // connections bound as the service account
	probe   prober
	closed  atomic.Bool
	obs     *telemetry // metrics, spans and Stats' login counters
}

// New validates cfg and returns an Authenticator using a copy of it.
func New(cfg *Config) (*Authenticator, error) {
	if cfg == nil {
		return nil, configErr("no configuration", envURL)
	}
	p, problems := cfg.parse()
	if err := joinProblems(problems); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	if c.usesGroupSyncer() && c.Store == nil {
		return nil, configErr("the group syncer writes groups into Config.Store, which is nil", envSyncRelations)
	}
	a := &Authenticator{cfg: c, servers: p.servers, health: make([]health, len(p.servers)), now: time.Now,
		synced: groupRefs(c.SyncedGroups)}
	if c.LoginGroup != "" {
		a.loginGroup = newGroupRef(c.LoginGroup)
	}
	noteTLS(&a.cfg, a.servers)
	a.users = &pool{a: a, size: c.PoolSize}
	a.life, a.lifeEnd = context.WithCancel(context.Background())
	a.service = &pool{a: a, size: c.PoolSize}
	a.probe.init()

	a.tlsBase = &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSConfig != nil {
		a.tlsBase = c.TLSConfig.Clone()
	}
	if p.rootCAs != nil {
		a.tlsBase.RootCAs = p.rootCAs
	}
	if c.InsecureSkipVerify {
		a.tlsBase.InsecureSkipVerify = true
	}
	a.warnInsecure()

	seen := map[string]bool{}
	addAttr := func(attr string) {
		if k := strings.ToLower(attr); !seen[k] {
			seen[k] = true
			a.attrs = append(a.attrs, attr)
		}
	}
	addAttr(c.usernameAttribute())
	for _, field := range slices.Sorted(maps.Keys(c.UserFields)) {
		addAttr(c.UserFields[field])
	}
	addAttr("memberOf")
	addAttr("primaryGroupID") // Active Directory's primary group, not in memberOf
	a.syncAttrs = slices.Clip(a.attrs)
	for _, p := range []any{c.SearchFilters, c.SyncRelations} {
		if r, ok := p.(AttributeRequester); ok {
			for _, attr := range r.RequestedAttributes(&a.cfg) {
				addAttr(attr)
			}
		}
	}
	a.obs = newTelemetry(a)
	return a, nil
}

// warnInsecure logs, once per Authenticator, a warning for each way its
// configuration lets a password be read on the network: certificate
// verification turned off (LDAP_AUTH_TLS_INSECURE_SKIP_VERIFY, or a
// Config.TLSConfig that skips it), and plain ldap:// without StartTLS.
func (a *Authenticator) warnInsecure() {
	ctx := context.Background()
	if a.tlsBase.InsecureSkipVerify {
		a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: TLS certificate verification is off: anyone on the network path can pose as the directory and read every password",
			slog.String("setting", envInsecureSkipVerify+" or Config.TLSConfig.InsecureSkipVerify"))
	}
	if a.cfg.UseTLS {
		return
	}
	var plain []string
	for _, s := range a.servers {
		if !s.ldaps {
			plain = append(plain, s.url)
		}
	}
	if len(plain) > 0 {
		a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: passwords cross the network in clear text: plain ldap:// without StartTLS; use ldaps:// or "+envUseTLS+"=true",
			slog.String("urls", strings.Join(plain, " ")))
	}
}

// Close closes the pool and stops the probes; logins in flight finish,
// later ones fail with net.ErrClosed. It may be called more than once.
func (a *Authenticator) Close() error {
	a.closed.Store(true)
	a.bgMu.Lock()
	a.bgClosed = true
	a.bgMu.Unlock()
	a.lifeEnd()
	a.background.Wait()
	a.stopProbes()
	a.users.close()
	a.service.close()
	a.obs.close()
	return nil
}

// Authenticate logs the user in and returns the user as the directory holds
// it; a refusal is a [*LoginError] (docs/errors.md).
func (a *Authenticator) Authenticate(ctx context.Context, username, password string) (_ *User, err error) {
	ctx, obs := a.obs.loginStart(ctx, username)
	defer obs.end(&err)
	if err := a.refuseEarly(ctx, username, password); err != nil {
		return nil, err
	}
	l, err := a.bindAndFind(ctx, username, password)
	if l != nil {
		defer a.release(l)
	}
	if err != nil {
		return nil, err
	}
	return a.finishLogin(ctx, l, username)
}

// refuseEarly refuses, before any I/O, a login whose username or password
// is too long, empty or malformed, and any login after Close.
func (a *Authenticator) refuseEarly(ctx context.Context, username, password string) error {
	log := a.cfg.Logger
	if len(username) > a.cfg.MaxUsernameLength || len(password) > a.cfg.MaxPasswordLength {
		// Refused before any I/O: an oversized request could make a server
		// drop the connection and be marked down. The error quotes a short
		// prefix of the name, never the password.
		log.LogAttrs(ctx, slog.LevelDebug, "ldapauth: login refused before contacting the directory: too long", slog.String("username", clip(username)))
		return &LoginError{Err: ErrInvalidCredentials, Username: clip(username),
			Reason: fmt.Sprintf("username or password too long (limits %d and %d bytes)", a.cfg.MaxUsernameLength, a.cfg.MaxPasswordLength)}
	}
	if !validCredentialText(username) || !validCredentialText(password) {
		log.LogAttrs(ctx, slog.LevelDebug, "ldapauth: login refused before contacting the directory", slog.String("username", username))
		return &LoginError{Err: ErrInvalidCredentials, Username: username, Reason: "empty or malformed username or password"}
	}
	if a.closed.Load() {
		return errClosed
	}
	return nil
}

// bindAndFind checks the password with a bind and finds the user's entry
// (through the login group's membership when the search filters alone do
// not find it), or says why the login is refused.
func (a *Authenticator) bindAndFind(ctx context.Context, username, password string) (*login, error) {
	a.probeDue()
	var l *login
	var err error
	if a.cfg.SearchThenBind {
		l, err = a.searchThenBind(ctx, username, password)
	} else {
		l, err = a.bindThenSearch(ctx, username, password)
	}
	if err != nil || l.entry != nil {
		return l, err
	}
	adm, err := a.admitLoginGroup(ctx, l.c, username)
	if err != nil {
		return l, err
	}
	if adm.check == nil {
		return l, a.notFound(ctx, l.c, username, l.bindName, adm)
	}
	l.entry, l.check = adm.entry, adm.check
	return l, nil
}

// release puts the login's connections back into their pools.
func (a *Authenticator) release(l *login) {
	if l.svc != nil {
		a.service.put(l.svc)
	}
	a.users.put(l.uc)
}

// finishLogin proves that the entry found is the account the bind checked,
// then saves the user and runs the relation syncer.
func (a *Authenticator) finishLogin(ctx context.Context, l *login, username string) (_ *User, err error) {
	// The entry found must be the account whose password the bind checked.
	if err := a.proveIdentity(ctx, l.uc, username, l.bindName, l.entry); err != nil {
		return nil, err
	}
	var u *User
	if l.check != nil {
		u = l.check.u
	} else {
		u = a.userFromEntry(l.entry)
	}
	u.PasswordWarning = l.warning
	name, err := a.loginName(l.entry, username)
	if err != nil {
		return nil, err
	}
	u.Username, u.Fields["username"] = name, name
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: login", slog.String("username", u.Username), slog.String("dn", u.DN))

	if a.cfg.Store != nil {
		ctx, step := a.obs.step(ctx, "ldapauth.store.save_user")
		err := a.cfg.Store.SaveUser(ctx, u)
		step.done(err)
		if err != nil {
			return nil, &StoreError{Op: "save user", Err: err}
		}
	}
	ctx, step := a.obs.step(ctx, "ldapauth.sync_relations")
	defer func() { step.done(err) }()
	dir := &loginDirectory{conn: l.c, a: a, member: l.check}
	err = a.cfg.SyncRelations.SyncRelations(ctx, &a.cfg, u, dir)
	if err != nil {
		return nil, wrap(classifyNetwork(err), "relation syncer %s", formatterName(a.cfg.SyncRelations))
	}
	return u, nil
}

// login is what the bind and the search of a login found.
type login struct {
	uc  *conn // bound as the user; Authenticate puts it back into the users' pool
	svc *conn // bound as the service account, if one searched; put back into the service pool
	c   *conn // the connection the search ran on (uc or svc), which the syncer uses

	bindName string
	entry    *ldap.Entry // nil: the login search found nobody
	check    *memberCheck
	warning  *PasswordWarning
}

// userBind returns the user's bind as bindName: the bind carries the
// password policy request control, and its answer's controls, stored in
// *ctrls, say why a bind failed, or that a good one must not log in
// (changeAfterReset).
func userBind(ctx context.Context, bindName, password string, ctrls *[]ldap.Control) func(*conn) error {
	return func(c *conn) error {
		var err error
		*ctrls, err = c.bind(ctx, bindName, password, ldap.NewControlBeheraPasswordPolicy())
		if err == nil {
			c.as = identity{name: bindName}
		}
		return err
	}
}

// bindThenSearch binds as the name the username formatter makes, then
// finds the user's entry: as the service account, on a second connection,
// at the same time as the bind, or as the user after it.
func (a *Authenticator) bindThenSearch(ctx context.Context, username, password string) (*login, error) {
	bindName, err := a.cfg.FormatUsername.FormatUsername(&a.cfg, username)
	if err != nil {
		return nil, wrap(err, "username formatter %s", formatterName(a.cfg.FormatUsername))
	}
	if !validCredentialText(bindName) {
		// An empty bind name with a password is an unauthenticated or
		// anonymous bind on some servers: never send it.
		a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: login refused before contacting the directory: bad bind name", slog.String("username", username))
		return nil, &LoginError{Err: ErrInvalidCredentials, Username: username, BindName: bindName, Formatter: formatterName(a.cfg.FormatUsername),
			Reason: "the username formatter made an empty or malformed bind name"}
	}
	l := &login{bindName: bindName}
	if a.cfg.ConnectionUsername == "" {
		return l, a.bindThenFind(ctx, l, username, password)
	}
	return l, a.bindWhileSearching(ctx, l, username, password)
}

// bindUser binds as bindName on a connection of the users' pool (l.uc) and
// reads the password policy's answer into l.warning.
func (a *Authenticator) bindUser(ctx context.Context, l *login, username, bindName, password string) error {
	var ctrls []ldap.Control
	var err error
	if l.uc, err = a.session(ctx, a.users, nil, userBind(ctx, bindName, password, &ctrls)); err != nil {
		return a.bindError(ctx, withPolicy(err, ctrls), username, bindName)
	}
	l.warning, err = a.afterGoodBind(ctrls, username, bindName)
	return err
}

// bindThenFind binds as the user, then searches as the user on the same
// connection.
func (a *Authenticator) bindThenFind(ctx context.Context, l *login, username, password string) error {
	if err := a.bindUser(ctx, l, username, l.bindName, password); err != nil {
		return err
	}
	l.c = l.uc
	var err error
	l.entry, err = a.findUser(ctx, l.uc, username, a.cfg.SearchFilters)
	return err
}

// bindWhileSearching runs the user's bind and the service account's search
// at the same time, on two connections: one round trip rather than two. The
// search's result is used only once the bind has succeeded. When the bind
// fails the login returns at once, so that a known and an unknown user are
// refused as fast: the search is abandoned to finish in the background
// (bounded by the receive timeout, cut short by Close) and its connection
// goes back to the pool.
func (a *Authenticator) bindWhileSearching(ctx context.Context, l *login, username, password string) error {
	search, err := a.searchAside(ctx, username)
	if err != nil {
		return err
	}
	if err := a.bindUser(ctx, l, username, l.bindName, password); err != nil {
		search.abandon()
		return err
	}
	f := search.wait()
	l.svc, l.c, l.entry = f.c, f.c, f.entry
	return f.err
}

// asideSearch is the service account's login search running beside the
// user's bind.
type asideSearch struct {
	results   chan found
	abandoned chan struct{}
	follow    func() bool // stops the search following the login's ctx
}

// found is what an aside search found.
type found struct {
	c     *conn
	entry *ldap.Entry
	err   error
}

// wait returns what the search found.
func (s *asideSearch) wait() found {
	f := <-s.results
	s.follow()
	return f
}

// abandon leaves the search to finish in the background; its connection
// goes back to the service pool.
func (s *asideSearch) abandon() {
	s.follow()
	close(s.abandoned)
}

// searchAside starts the service account's login search for username.
// While the login waits for it, the search ends with ctx; once abandoned,
// it ends at the latest with Close.
func (a *Authenticator) searchAside(ctx context.Context, username string) (*asideSearch, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &asideSearch{results: make(chan found), abandoned: make(chan struct{}), follow: context.AfterFunc(ctx, cancel)}
	a.bgMu.Lock()
	if a.bgClosed {
		a.bgMu.Unlock()
		s.follow()
		cancel()
		return nil, errClosed
	}
	a.background.Add(1)
	a.bgMu.Unlock()
	go func() {
		defer a.background.Done()
		defer context.AfterFunc(a.life, cancel)()
		defer cancel()
		var f found
		f.c, f.err = a.session(sctx, a.service, a.serviceBind(sctx), func(c *conn) error {
			var err error
			f.entry, err = a.findUser(sctx, c, username, a.cfg.SearchFilters)
			return err
		})
		select {
		case s.results <- f:
		case <-s.abandoned:
			a.service.put(f.c)
		}
	}()
	return s, nil
}

// searchThenBind finds the user's entry as the service account, then binds
// as the entry's DN (LDAP_AUTH_SEARCH_THEN_BIND). A user the search does
// not find is refused without a bind; one it finds only without the
// login-group term is bound as too, so that ErrNotPermitted is only ever
// said to the holder of the password.
func (a *Authenticator) searchThenBind(ctx context.Context, username, password string) (*login, error) {
	l := &login{}
	var err error
	l.svc, err = a.session(ctx, a.service, a.serviceBind(ctx), func(c *conn) error {
		var err error
		l.entry, err = a.findUser(ctx, c, username, a.cfg.SearchFilters)
		return err
	})
	l.c = l.svc
	if err != nil {
		return l, err
	}
	entry := l.entry
	var adm admission
	if entry == nil {
		if adm, err = a.admitLoginGroup(ctx, l.svc, username); err != nil {
			return l, err
		}
		entry, l.entry, l.check = adm.entry, adm.entry, adm.check
		if entry == nil {
			return l, &LoginError{Err: ErrUnknownUser, Username: username, Formatter: searchThenBindName,
				Reason: fmt.Sprintf("no %s entry under %s matches", a.cfg.ObjectClass, a.cfg.SearchBase)}
		}
	}
	l.bindName = entry.DN
	if err := a.bindUser(ctx, l, username, entry.DN, password); err != nil {
		return l, err
	}
	if l.check == nil && adm.searched {
		// Found only without the login-group term, and not admitted.
		return l, &LoginError{Err: ErrNotPermitted, Username: username, Reason: "the search filters exclude the user (login group)"}
	}
	return l, nil
}

// searchThenBindName stands for the username formatter in the errors of
// search-then-bind logins, which bind as the DN found.
const searchThenBindName = "search-then-bind (" + envSearchThenBind + ")"

// session runs first, the first operation of a login, on a connection from
// p, or on a new one that setup (if not nil) prepares. It returns the
// connection, which the caller puts back into p, and first's error. When
// the connection was lost before a single byte of first's answer arrived,
// first runs once more on a newly dialled connection: the retry rule of the
// package documentation.
func (a *Authenticator) session(ctx context.Context, p *pool, setup, first func(*conn) error) (*conn, error) {
	for attempt := 0; ; attempt++ {
		p.n.retried(attempt)
		var c *conn
		if attempt == 0 {
			c = p.get()
		}
		if c == nil {
			var err error
			c, err = a.dial(ctx)
			if p.n.dialed(c, err); err != nil {
				return nil, err
			}
			if setup != nil {
				if err := setup(c); err != nil {
					c.close()
					if c.lost && attempt == 0 {
						continue
					}
					return nil, err
				}
			}
		}
		err := first(c)
		if err != nil && c.lost && attempt == 0 {
			a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: connection lost before answering, redialling",
				slog.String("url", c.url), slog.Bool("pooled", c.reused))
			c.close()
			continue
		}
		return c, err
	}
}

// serviceBind returns the setup of a service-account connection: a bind as
// the service account, whose refusal is ErrServiceAccount.
func (a *Authenticator) serviceBind(ctx context.Context) func(*conn) error {
	return func(c *conn) error {
		_, err := c.bind(ctx, a.cfg.ConnectionUsername, a.cfg.ConnectionPassword)
		if err == nil {
			c.as = identity{name: a.cfg.ConnectionUsername, variable: envConnectionUsername}
			return nil
		}
		if isNetworkError(err) || errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
			return classifyNetwork(err)
		}
		return fmt.Errorf("%w: bind as %q: %w", ErrServiceAccount, a.cfg.ConnectionUsername, err)
	}
}

// findUser runs the login search and returns the one matching entry, or nil.
func (a *Authenticator) findUser(ctx context.Context, c *conn, username string, builder SearchFilterBuilder) (*ldap.Entry, error) {
	cfg, err := a.searchConfig(ctx, c)
	if err != nil {
		return nil, err
	}
	filter, err := userFilter(cfg, builder, map[string]string{a.cfg.usernameAttribute(): username})
	if err != nil {
		return nil, wrap(err, "search filter builder %s", formatterName(builder))
	}
	req := ldap.NewSearchRequest(a.cfg.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, // two entries are enough to tell one from many
		0, false, filter, a.attrs, nil)
	res, err := c.Search(ctx, req)
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			return nil, fmt.Errorf("%w: %s", ErrAmbiguousUser, filter)
		}
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil, a.searchBaseError(c.as, err)
		}
		if isNetworkError(err) || ctx.Err() != nil {
			return nil, classifyNetwork(err)
		}
		if cerr := inChainError(cfg, err); cerr != err {
			return nil, cerr
		}
		return nil, wrap(err, "search %s under %s", filter, a.cfg.SearchBase)
	}
	switch len(res.Entries) {
	case 0:
		return nil, nil
	case 1:
		return res.Entries[0], nil
	default:
		return nil, fmt.Errorf("%w: %s", ErrAmbiguousUser, filter)
	}
}

// searchBaseError reports a login search answered noSuchObject (32) after a
// good bind: the search base does not exist, or the identity that searched
// may not see it (OpenLDAP answers so rather than disclose an entry). It is
// a configuration fault, never the user's invalid credentials; when a
// service or sync account searched, it also matches ErrServiceAccount.
func (a *Authenticator) searchBaseError(as identity, err error) error {
	if as.variable == "" {
		return &ConfigError{Variables: []string{envSearchBase, envConnectionUsername}, Err: err,
			Problem: fmt.Sprintf("the login search as the user (bind name %q) was answered noSuchObject: %s does not exist, or users may not read it; fix the search base, grant users read access, or set a service account that may read it",
				as.name, a.cfg.SearchBase)}
	}
	return &ConfigError{Variables: []string{envSearchBase, as.variable}, Err: fmt.Errorf("%w: %w", ErrServiceAccount, err),
		Problem: fmt.Sprintf("the search as %q was answered noSuchObject: %s does not exist, or that account may not read it",
			as.name, a.cfg.SearchBase)}
}

// notFound explains a login search that found nothing after a good bind:
// the user exists but the filters (the login group) exclude it, or the
// search does not find the user at all. It reuses the search without the
// login-group term that admitLoginGroup ran (adm); otherwise, with filters
// other than the default, it costs one more search, on this failure path
// only (one more on a directory without memberOf).
func (a *Authenticator) notFound(ctx context.Context, c *conn, username, bindName string, adm admission) error {
	lerr := &LoginError{Err: ErrUnknownUser, Username: username, BindName: bindName, Formatter: a.bindSource(),
		Reason: fmt.Sprintf("the bind succeeded but no %s entry under %s matches", a.cfg.ObjectClass, a.cfg.SearchBase)}
	if a.cfg.usesDefaultFilters() {
		return lerr // the search that found nothing was this one
	}
	entry := adm.entry
	if !adm.searched {
		var err error
		if entry, err = a.findUser(ctx, c, username, DefaultFilters{}); err != nil {
			return err
		}
	}
	if entry == nil {
		return lerr
	}
	u := a.userFromEntry(entry)
	if a.loginGroup.dn != "" && !u.hasMemberOf {
		// No memberOf on this directory: the login group's own entry says.
		member, _, err := a.newMemberCheck(u, c).direct(ctx, a.loginGroup)
		if err != nil {
			return err
		}
		if member {
			return &LoginError{Err: ErrNotPermitted, Username: username, Reason: "the directory has no memberOf; use a filter builder that reads group entries"}
		}
	}
	return &LoginError{Err: ErrNotPermitted, Username: username, Reason: "the search filters exclude the user (login group)"}
}

// afterGoodBind reads the password policy control of a successful bind: the
// warning for the user it carries, or the refusal (a password that must be
// changed first).
func (a *Authenticator) afterGoodBind(ctrls []ldap.Control, username, bindName string) (*PasswordWarning, error) {
	warning, acct := afterGoodBind(ctrls)
	if acct != nil {
		return nil, &LoginError{Err: acct.kind, Code: acct.code, Username: username, BindName: bindName,
			Formatter: a.bindSource(), Reason: "the password policy refused the login"}
	}
	return warning, nil
}

// bindSource names what made the bind name, for errors: the username
// formatter, or search-then-bind.
func (a *Authenticator) bindSource() string {
	if a.cfg.SearchThenBind {
		return searchThenBindName
	}
	return formatterName(a.cfg.FormatUsername)
}

// bindError classifies a failed bind of the user. A refusal is a
// [*LoginError] matching ErrInvalidCredentials: invalidCredentials (49),
// any result carrying a password policy account state (389 Directory
// Server answers a locked account with constraintViolation, 19, and a
// disabled one with unwillingToPerform, 53, both with accountLocked), and
// the results that are about the bind name rather than the server
// (bindNameResults: a name the server cannot parse, made from what the user
// typed). Anything else the server answers is returned as the server's
// error; network failures match ErrUnavailable.
func (a *Authenticator) bindError(ctx context.Context, err error, username, bindName string) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		isTLSError(err) { // the bind was never sent
		return err
	}
	if isNetworkError(err) {
		return classifyNetwork(err)
	}
	var lerr *ldap.Error
	if errors.As(err, &lerr) {
		if _, policy := policyAccountState(err); lerr.ResultCode == ldap.LDAPResultInvalidCredentials || policy {
			return a.refusedBind(err, username, bindName)
		}
		if reason, ok := bindNameResults[lerr.ResultCode]; ok {
			a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: bind name refused by the directory",
				slog.String("username", username), slog.String("bind_name", bindName),
				slog.Int("result_code", int(lerr.ResultCode)), slog.String("result", ldap.LDAPResultCodeMap[lerr.ResultCode]))
			return &LoginError{Err: ErrInvalidCredentials, Username: username, BindName: bindName,
				Formatter: a.bindSource(), Reason: reason, cause: err}
		}
	}
	return wrap(err, "bind as %q (from %s)", bindName, a.bindSource())
}

// bindNameResults are the bind results that are about the bind name, not
// the server: OpenLDAP answers invalidDNSyntax (34) to a name it cannot
// parse as a DN (a 10,000-character username). The name comes from what
// the user typed, so this is a refused login. (noSuchObject, 32, is left
// the server's: a bind DN under a suffix the server does not hold is as
// likely a wrong search base as a wrong username.)
var bindNameResults = map[uint16]string{
	ldap.LDAPResultInvalidDNSyntax: "the directory cannot parse the bind name (invalid DN syntax, result 34)",
}

// userFromEntry maps a directory entry to a User.
func (a *Authenticator) userFromEntry(e *ldap.Entry) *User {
	u := &User{DN: e.DN, Fields: map[string]string{}, Attributes: make(map[string][]string, len(e.Attributes))}
	for _, attr := range e.Attributes {
		u.Attributes[attr.Name] = attr.Values
		if strings.EqualFold(attr.Name, "memberOf") {
			u.Groups = append(u.Groups, attr.Values...)
			u.hasMemberOf = true
		}
	}
	for field, attr := range a.cfg.UserFields {
		if v := e.GetEqualFoldAttributeValue(attr); v != "" {
			u.Fields[field] = v
		}
	}
	u.Username = u.Fields["username"]
	return u
}
