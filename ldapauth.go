// Package ldapauth logs users in against an LDAP directory (OpenLDAP,
// Active Directory and others) and keeps the caller's own users and groups
// in step with it.
//
// It is the Go counterpart of the LDAP login that Flagsmith builds on
// django-python3-ldap: the same LDAP_AUTH_* environment variables with the
// same meaning ([ConfigFromEnv]), the same pluggable pieces
// ([UsernameFormatter], [SearchFilterBuilder], [RelationSyncer]), and the
// same login flow:
//
//  1. an empty password or username is refused before any network I/O;
//  2. connect, with StartTLS when configured (certificates verified);
//  3. bind as the user, the bind name made by the username formatter;
//  4. rebind as the service account, if one is configured;
//  5. search for the user's entry with the configured filters: no entry
//     refuses the login (this is how the login group works), more than one
//     is an error;
//  6. save the user into the [UserStore] under the directory's spelling of
//     the username, with the mapped fields;
//  7. run the relation syncer (for example [SyncUserGroups]).
//
// Errors are matched with errors.Is against [ErrInvalidCredentials],
// [ErrNotPermitted], [ErrUnavailable], [ErrConfig] and the others below.
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

	"github.com/go-ldap/ldap/v3"
)

// Errors returned by ldapauth, matched with errors.Is.
var (
	// ErrInvalidCredentials means the login was refused: wrong password,
	// unknown user, or an empty or malformed username or password.
	ErrInvalidCredentials = errors.New("ldapauth: invalid credentials")
	// ErrUnknownUser means the directory has no such user. It also matches
	// ErrInvalidCredentials; tell it apart only for diagnostics, never in
	// what a person trying to log in is shown.
	ErrUnknownUser = errors.New("ldapauth: unknown user")
	// ErrNotPermitted means the password was right but the user may not log
	// in: the search filters (the login group) exclude the user.
	ErrNotPermitted = errors.New("ldapauth: not permitted to log in")
	// ErrAmbiguousUser means more than one entry matches the login search.
	ErrAmbiguousUser = errors.New("ldapauth: more than one directory entry matches the user")
	// ErrUnavailable means no server could be reached or a server did not
	// answer in time, or answered busy or unavailable.
	ErrUnavailable = errors.New("ldapauth: directory unavailable")
	// ErrServiceAccount means the service account (or the sync account)
	// could not bind. It is a configuration fault, never reported as the
	// user's invalid credentials.
	ErrServiceAccount = errors.New("ldapauth: service account bind refused")
	// ErrConfig matches every configuration error ([*ConfigError]).
	ErrConfig = errors.New("ldapauth: bad configuration")
	// ErrNotConfigured means LDAP_AUTH_URL is unset: LDAP login is off.
	ErrNotConfigured = errors.New("ldapauth: LDAP_AUTH_URL is not set")
)

// LoginError reports a refused login with what a person debugging the
// configuration needs: the bind name tried and the formatter that made it.
// It never holds the password. errors.Is matches its Kind (and
// [ErrInvalidCredentials] when the Kind is [ErrUnknownUser]).
type LoginError struct {
	// Kind is ErrInvalidCredentials, ErrUnknownUser or ErrNotPermitted.
	Kind error
	// Username is what was typed.
	Username string
	// BindName is the name the bind was tried with, if any.
	BindName string
	// Formatter names the username formatter that made BindName.
	Formatter string
	// Reason says what happened, in words.
	Reason string
	// Err is the directory's answer, if any.
	Err error
}

func (e *LoginError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.BindName != "" {
		fmt.Fprintf(&b, " (bind name %q from %s)", e.BindName, e.Formatter)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is matches the Kind, and ErrInvalidCredentials for an unknown user.
func (e *LoginError) Is(target error) bool {
	return target == e.Kind || (target == ErrInvalidCredentials && e.Kind == ErrUnknownUser)
}

// Unwrap returns the directory's answer.
func (e *LoginError) Unwrap() error { return e.Err }

// TLSError reports a TLS failure: a certificate that does not verify, or a
// server that refuses StartTLS. ldapauth never falls back to plain text.
type TLSError struct {
	URL string
	Err error
}

func (e *TLSError) Error() string { return "ldapauth: TLS with " + e.URL + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *TLSError) Unwrap() error { return e.Err }

// User is a user as read from the directory on login.
type User struct {
	// DN is the user's entry.
	DN string `json:"dn"`
	// Username is the directory's value of the username attribute, which
	// may differ in case from what was typed.
	Username string `json:"username"`
	// Fields holds the mapped fields (LDAP_AUTH_USER_FIELDS) found on the
	// entry: the first value of each attribute.
	Fields map[string]string `json:"fields"`
	// Groups holds the DNs in the entry's memberOf.
	Groups []string `json:"groups,omitempty"`
	// Attributes holds every attribute read, by the server's spelling.
	Attributes map[string][]string `json:"attributes,omitempty"`
	// PasswordWarning is set when the directory's password policy warned
	// that the password expires soon or has expired and this login used a
	// grace login.
	PasswordWarning *PasswordWarning `json:"password_warning,omitempty"`

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
	tlsBase *tls.Config
	attrs   []string // attributes the login search asks for
}

// New validates cfg and returns an Authenticator using a copy of it.
func New(cfg *Config) (*Authenticator, error) {
	if cfg == nil {
		return nil, configErr("no configuration", EnvURL)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	switch c.SyncRelations.(type) {
	case SyncUserGroups, *SyncUserGroups:
		if c.Store == nil {
			return nil, configErr("the group syncer writes groups into Config.Store, which is nil", EnvSyncRelations)
		}
	}
	servers, err := parseServers(c.URLs)
	if err != nil {
		return nil, configErr(err.Error(), EnvURL)
	}
	a := &Authenticator{cfg: c, servers: servers}

	a.tlsBase = &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSConfig != nil {
		a.tlsBase = c.TLSConfig.Clone()
	}
	if c.TLSCAFile != "" {
		pool, err := loadCAFile(c.TLSCAFile)
		if err != nil {
			return nil, &ConfigError{Variables: []string{EnvTLSCAFile}, Problem: err.Error(), Err: err}
		}
		a.tlsBase.RootCAs = pool
	}
	if c.InsecureSkipVerify {
		a.tlsBase.InsecureSkipVerify = true
	}

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
	for _, p := range []any{c.SearchFilters, c.SyncRelations} {
		if r, ok := p.(AttributeRequester); ok {
			for _, attr := range r.RequestedAttributes(&a.cfg) {
				addAttr(attr)
			}
		}
	}
	return a, nil
}

// Close releases the Authenticator's resources. Authenticate must not be
// called after Close.
func (a *Authenticator) Close() error { return nil }

// Authenticate logs the user in with the password, as described in the
// package documentation, and returns the user as the directory holds it.
//
// A refused login returns a [*LoginError] matching ErrInvalidCredentials
// (ErrUnknownUser also matches it) or ErrNotPermitted. An unreachable or
// slow directory returns an error matching ErrUnavailable; a cancelled ctx
// returns ctx's error. Store and syncer errors are returned wrapped.
// When the directory names the account's state (disabled, locked, expired,
// password expired or to be changed), the error also matches the state's
// error, such as [ErrAccountLocked], and holds an [*AccountError].
func (a *Authenticator) Authenticate(ctx context.Context, username, password string) (*User, error) {
	log := a.cfg.Logger
	if !validCredentialText(username) || !validCredentialText(password) {
		log.LogAttrs(ctx, slog.LevelDebug, "ldapauth: login refused before contacting the directory", slog.String("username", username))
		return nil, &LoginError{Kind: ErrInvalidCredentials, Username: username, Reason: "empty or malformed username or password"}
	}
	bindName, err := a.cfg.FormatUsername.FormatUsername(&a.cfg, username)
	if err != nil {
		return nil, fmt.Errorf("ldapauth: username formatter %s: %w", formatterName(a.cfg.FormatUsername), err)
	}

	c, err := a.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()

	ctrls, err := c.bind(ctx, bindName, password, ldap.NewControlBeheraPasswordPolicy())
	if err != nil {
		return nil, a.bindError(withPolicy(err, ctrls), username, bindName)
	}
	warning, acct := afterGoodBind(ctrls)
	if acct != nil {
		return nil, &LoginError{Kind: ErrInvalidCredentials, Username: username, BindName: bindName,
			Formatter: formatterName(a.cfg.FormatUsername), Reason: "the password policy refused the login", Err: acct}
	}
	if a.cfg.ConnectionUsername != "" {
		if _, err := c.bind(ctx, a.cfg.ConnectionUsername, a.cfg.ConnectionPassword); err != nil {
			if isNetworkError(err) || errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
				return nil, classifyNetwork(err)
			}
			return nil, fmt.Errorf("%w: bind as %q: %w", ErrServiceAccount, a.cfg.ConnectionUsername, err)
		}
	}

	entry, err := a.findUser(ctx, c, username, a.cfg.SearchFilters)
	if err != nil {
		return nil, err
	}
	if entry == nil {
		if entry, err = a.admitLoginGroup(ctx, c, username); err != nil {
			return nil, err
		}
	}
	if entry == nil {
		return nil, a.notFound(ctx, c, username, bindName)
	}
	u := a.userFromEntry(entry)
	u.PasswordWarning = warning
	if u.Username == "" {
		return nil, fmt.Errorf("ldapauth: entry %s has no %s attribute, the username field (%s)", u.DN, a.cfg.usernameAttribute(), EnvUserFields)
	}
	log.LogAttrs(ctx, slog.LevelDebug, "ldapauth: login", slog.String("username", u.Username), slog.String("dn", u.DN))

	if a.cfg.Store != nil {
		if err := a.cfg.Store.SaveUser(ctx, u); err != nil {
			return nil, &StoreError{Op: "save user", Err: err}
		}
	}
	if err := a.cfg.SyncRelations.SyncRelations(ctx, &a.cfg, u, c); err != nil {
		return nil, fmt.Errorf("ldapauth: relation syncer %s: %w", formatterName(a.cfg.SyncRelations), classifyNetwork(err))
	}
	return u, nil
}

// findUser runs the login search and returns the one matching entry, or nil.
func (a *Authenticator) findUser(ctx context.Context, c *conn, username string, builder SearchFilterBuilder) (*ldap.Entry, error) {
	filter, err := userFilter(&a.cfg, builder, map[string]string{a.cfg.usernameAttribute(): username})
	if err != nil {
		return nil, fmt.Errorf("ldapauth: search filter builder %s: %w", formatterName(builder), err)
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
			return nil, nil
		}
		if isNetworkError(err) || ctx.Err() != nil {
			return nil, classifyNetwork(err)
		}
		return nil, fmt.Errorf("ldapauth: search %s under %s: %w", filter, a.cfg.SearchBase, err)
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

// notFound explains a login search that found nothing after a good bind:
// the user exists but the filters (the login group) exclude it, or the
// search does not find the user at all. It costs one more search, on this
// failure path only (two on a directory without memberOf).
func (a *Authenticator) notFound(ctx context.Context, c *conn, username, bindName string) error {
	lerr := &LoginError{Kind: ErrUnknownUser, Username: username, BindName: bindName, Formatter: formatterName(a.cfg.FormatUsername),
		Reason: fmt.Sprintf("the bind succeeded but no %s entry under %s matches", a.cfg.ObjectClass, a.cfg.SearchBase)}
	if _, isDefault := a.cfg.SearchFilters.(DefaultFilters); isDefault {
		return lerr
	}
	entry, err := a.findUser(ctx, c, username, DefaultFilters{})
	if err != nil {
		return err
	}
	if entry == nil {
		return lerr
	}
	u := a.userFromEntry(entry)
	if a.cfg.LoginGroup != "" && !u.hasMemberOf {
		// No memberOf on this directory: the login group's own entry says.
		member, err := isMember(ctx, u, a.cfg.LoginGroup, c)
		if err != nil {
			return err
		}
		if member {
			return &LoginError{Kind: ErrNotPermitted, Username: username, Reason: "the directory has no memberOf; use a filter builder that reads group entries"}
		}
	}
	return &LoginError{Kind: ErrNotPermitted, Username: username, Reason: "the search filters exclude the user (login group)"}
}

func (a *Authenticator) bindError(err error, username, bindName string) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		return a.refusedBind(err, username, bindName)
	}
	if isNetworkError(err) {
		return classifyNetwork(err)
	}
	return fmt.Errorf("ldapauth: bind as %q (from %s): %w", bindName, formatterName(a.cfg.FormatUsername), err)
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
