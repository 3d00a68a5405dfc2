package ldapauth

import (
	"errors"
	"fmt"
	"net"
	"strings"
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
	// could not bind, or may not see the search base (then in a
	// [*ConfigError]). It is a configuration fault, never reported as the
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

// Error says why the login was refused, with the bind name and the
// formatter, never the password.
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
		b.WriteString(unprefixed(e.Err))
	}
	return b.String()
}

// Is matches the Kind, and ErrInvalidCredentials for an unknown user.
func (e *LoginError) Is(target error) bool {
	return target == e.Kind || (target == ErrInvalidCredentials && e.Kind == ErrUnknownUser)
}

// Unwrap returns the directory's answer.
func (e *LoginError) Unwrap() error { return e.Err }

// chained adds context to err. Its message is "ldapauth: <context>: " and
// err's message without its own "ldapauth: " prefix, so that however deep
// the wrapping, the prefix appears once (messages name no operation twice).
type chained struct {
	msg string // with the prefix
	err error
}

func (e *chained) Error() string { return e.msg + ": " + unprefixed(e.err) }

func (e *chained) Unwrap() error { return e.err }

// wrap returns err with the context format makes, prefixed "ldapauth: "
// once (see chained).
func wrap(err error, format string, args ...any) error {
	return &chained{msg: "ldapauth: " + fmt.Sprintf(format, args...), err: err}
}

// unprefixed is err's message without a leading "ldapauth: ".
func unprefixed(err error) string { return strings.TrimPrefix(err.Error(), "ldapauth: ") }

// TLSError reports a TLS failure: a certificate that does not verify
// (unknown authority, expired, wrong name), a TLS alert, or a server that
// refuses StartTLS (other than busy or unavailable, which are outages). It
// is classified the same for LDAPS and StartTLS and never matches
// ErrUnavailable. ldapauth never falls back to plain text.
type TLSError struct {
	// URL is the server's, as in LDAP_AUTH_URL.
	URL string
	// Err is the TLS or StartTLS failure.
	Err error
}

// Error names the server and the failure.
func (e *TLSError) Error() string { return "ldapauth: TLS with " + e.URL + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *TLSError) Unwrap() error { return e.Err }

// errClosed is returned by Authenticate after Close.
var errClosed = fmt.Errorf("ldapauth: authenticator closed: %w", net.ErrClosed)

// ConfigError reports one bad configuration value. It never holds the value
// of a secret. It matches [ErrConfig] with errors.Is.
type ConfigError struct {
	// Variables names the environment variables involved, the first being
	// the one at fault (two or more for a mistake across variables).
	Variables []string
	// Problem says what is wrong.
	Problem string
	// Err is the underlying cause, if any.
	Err error
}

// Error names the variables and the problem.
func (e *ConfigError) Error() string {
	return "ldapauth: " + strings.Join(e.Variables, ", ") + ": " + e.Problem
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func configErr(problem string, vars ...string) *ConfigError {
	return &ConfigError{Variables: vars, Problem: problem}
}

// Errors of [Authenticator.Sync], matched with errors.Is.
var (
	// ErrSyncAborted means the sync stopped before removing anything: the
	// sync account could not bind, a search failed, hit a size or time
	// limit or was answered with referrals only, the connection was lost,
	// a page's writes failed, or ctx ended during the read. The creates,
	// updates and organisation joins of the pages of users read before it
	// stopped are written (they are the directory's truth; a dry run
	// writes none); no user, group or membership was removed and no
	// membership added. The error is a [*SyncAbortError] that also
	// matches its cause (ErrUnavailable, ErrServiceAccount,
	// context.Canceled, a [*StoreError], ...).
	ErrSyncAborted = errors.New("ldapauth: sync aborted, nothing removed")
	// ErrRemovalGuard means the sync refused to remove as many users,
	// synced groups or memberships as it planned (see
	// [Config.SyncMaxRemovalPercent]) and removed nothing (the creates and
	// updates of the users read are written as they are read; memberships
	// are not changed). The error is a
	// [*RemovalGuardError]; the report returned with it is the plan. Check
	// it, then run again with [SyncOptions.Force].
	ErrRemovalGuard = errors.New("ldapauth: sync refused: too many removals")
)

// SyncAbortError reports a sync that stopped before removing anything. It
// matches [ErrSyncAborted] and, through Unwrap, its cause.
type SyncAbortError struct {
	// Phase is where the run stopped.
	Phase SyncPhase
	// Page is the page of users being read (1-based) in SyncReadUsers.
	Page int
	// Hint says what may fix it, when something might.
	Hint string
	// Variables names the settings the hint is about.
	Variables []string
	// Err is the cause.
	Err error
}

// Error names the phase, the page and the cause, with the hint.
func (e *SyncAbortError) Error() string {
	var b strings.Builder
	b.WriteString(ErrSyncAborted.Error())
	b.WriteString(": ")
	b.WriteString(string(e.Phase))
	if e.Page > 0 {
		fmt.Fprintf(&b, ", page %d", e.Page)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "ldapauth: "))
	}
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Is reports whether target is ErrSyncAborted.
func (e *SyncAbortError) Is(target error) bool { return target == ErrSyncAborted }

// Unwrap returns the cause.
func (e *SyncAbortError) Unwrap() error { return e.Err }

// RemovalGuardError reports a sync refused by the removal guard. It matches
// [ErrRemovalGuard].
type RemovalGuardError struct {
	// RemovalGuard is what the guard weighed; the kinds it refused have
	// OverLimit set.
	RemovalGuard
	// EmptyDirectory is set when the directory returned no user at all
	// while the sync would remove some.
	EmptyDirectory bool
}

// Error says what the sync would remove, of how many, and why it refused.
func (e *RemovalGuardError) Error() string {
	if e.EmptyDirectory {
		return fmt.Sprintf("%s: the directory returned no user, the sync would remove all %d directory-managed users; check the search base and filters, then force", ErrRemovalGuard, e.Users.Remove)
	}
	var over []string
	for _, k := range []struct {
		what string
		c    RemovalCount
	}{{"directory-managed users", e.Users}, {"synced groups", e.Groups}, {"memberships of synced groups", e.Memberships}} {
		if k.c.OverLimit {
			over = append(over, fmt.Sprintf("%d of %d %s (%.1f%%)", k.c.Remove, k.c.Total, k.what, 100*float64(k.c.Remove)/float64(max(k.c.Total, 1))))
		}
	}
	return fmt.Sprintf("%s: %s, above %s=%d and the allowance of %d; check the plan, then force",
		ErrRemovalGuard, strings.Join(over, "; "), EnvSyncMaxRemoval, e.LimitPercent, e.Allowance)
}

// Is reports whether target is ErrRemovalGuard.
func (e *RemovalGuardError) Is(target error) bool { return target == ErrRemovalGuard }

// Account states a directory reports on a refused bind, matched with
// errors.Is. Every error that matches one of them also matches
// [ErrInvalidCredentials], so a caller that only checks for a failed login
// keeps working, while a UI can tell a person "your password expired". They
// come from the Active Directory bind diagnostic (data 530 ... 775) and from
// the password policy response control of OpenLDAP and others
// (draft-behera-ldap-password-policy). [*AccountError] carries the code.
var (
	// ErrAccountDisabled means the account is disabled (AD data 533).
	ErrAccountDisabled = errors.New("ldapauth: account disabled")
	// ErrAccountLocked means the account is locked out after too many
	// wrong passwords (AD data 775, password policy accountLocked).
	ErrAccountLocked = errors.New("ldapauth: account locked")
	// ErrAccountExpired means the account itself has expired (AD data 701).
	ErrAccountExpired = errors.New("ldapauth: account expired")
	// ErrPasswordExpired means the password has expired (AD data 532,
	// password policy passwordExpired).
	ErrPasswordExpired = errors.New("ldapauth: password expired")
	// ErrPasswordMustChange means the password was right but must be changed
	// before the account can be used (AD data 773, password policy
	// changeAfterReset).
	ErrPasswordMustChange = errors.New("ldapauth: password must be changed")
	// ErrLogonNotPermitted means the account may not log on now or from
	// here: outside its logon hours (AD data 530) or from a workstation it
	// is not allowed on (AD data 531).
	ErrLogonNotPermitted = errors.New("ldapauth: logon not permitted at this time or from this workstation")
)

// AccountError reports the account state a directory gave as the reason for
// refusing a bind. It is held in [LoginError.Err]. errors.Is matches its
// Kind and [ErrInvalidCredentials]; errors.As reaches the directory's own
// error through Unwrap.
type AccountError struct {
	// Kind is one of ErrAccountDisabled, ErrAccountLocked,
	// ErrAccountExpired, ErrPasswordExpired, ErrPasswordMustChange,
	// ErrLogonNotPermitted.
	Kind error
	// Code is the directory's own code: the data code of an Active
	// Directory bind diagnostic ("533"), or the name of the password policy
	// error ("accountLocked").
	Code string
	// Err is the directory's answer: the bind error, or nil when the bind
	// succeeded but the password policy control refused the login.
	Err error
}

// Error names the account state and the directory's code.
func (e *AccountError) Error() string {
	msg := strings.TrimPrefix(e.Kind.Error(), "ldapauth: ") + " (" + e.Code + ")"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is matches the Kind and ErrInvalidCredentials.
func (e *AccountError) Is(target error) bool {
	return target == e.Kind || target == ErrInvalidCredentials
}

// Unwrap returns the directory's answer.
func (e *AccountError) Unwrap() error { return e.Err }

// Errors of the identity proof, matched with errors.Is (held in an
// [*IdentityError]).
var (
	// ErrIdentityMismatch means the entry the login search found is not the
	// account whose password the bind checked: a name that resolves to one
	// account for the bind and to another for the search (a mail or UPN
	// equal to another user's name, the same uid in two places). The login
	// is refused; it also matches ErrInvalidCredentials.
	ErrIdentityMismatch = errors.New("ldapauth: the entry found is not the account whose password was checked")
	// ErrIdentityUnproven means ldapauth could not prove that the entry
	// found is the account the bind checked: the bind name is not the
	// entry's DN and the server does not answer Who Am I (RFC 4532) in a
	// form ldapauth can compare. Every such login is refused; the fix is
	// LDAP_AUTH_SEARCH_THEN_BIND (or a formatter that makes the entry's
	// DN). It is a configuration fault, not the user's.
	ErrIdentityUnproven = errors.New("ldapauth: cannot prove the entry found is the account whose password was checked")
)

// IdentityError reports a login refused because the entry found could not
// be proven to be the account the bind checked. errors.Is matches its Kind
// (and ErrInvalidCredentials for ErrIdentityMismatch).
type IdentityError struct {
	// Kind is ErrIdentityMismatch or ErrIdentityUnproven.
	Kind error
	// Username is what was typed (at most a short prefix of it).
	Username string
	// BindName is the name the bind succeeded with.
	BindName string
	// Bound is the server's answer to Who Am I ("dn:..." or "u:..."), if
	// it gave one.
	Bound string
	// EntryDN is the entry the login search found.
	EntryDN string
	// Err is the cause, such as the server's refusal of Who Am I.
	Err error
}

// Error says which names disagreed, never the password.
func (e *IdentityError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	fmt.Fprintf(&b, ": bind name %q, entry %q", e.BindName, e.EntryDN)
	if e.Bound != "" {
		fmt.Fprintf(&b, ", the server says the bind is %q", e.Bound)
	}
	if e.Kind == ErrIdentityUnproven {
		b.WriteString("; set " + EnvSearchThenBind + " (with a service account) to bind as the DN found")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(unprefixed(e.Err))
	}
	return b.String()
}

// Is matches the Kind, and ErrInvalidCredentials for a mismatch.
func (e *IdentityError) Is(target error) bool {
	return target == e.Kind || (target == ErrInvalidCredentials && e.Kind == ErrIdentityMismatch)
}

// Unwrap returns the cause.
func (e *IdentityError) Unwrap() error { return e.Err }

// StoreError reports a failure of the [UserStore].
type StoreError struct {
	// Op names the store operation, such as "save user" or "set member".
	Op string
	// Err is the store's error.
	Err error
}

// Error names the operation and the store's error.
func (e *StoreError) Error() string { return "ldapauth: store: " + e.Op + ": " + unprefixed(e.Err) }

// Unwrap returns the store's error.
func (e *StoreError) Unwrap() error { return e.Err }

var errNoSuchGroup = errors.New("no such group")

// errNoSuchUser is MemStore's refusal to join or add a user never saved.
var errNoSuchUser = errors.New("no such user: save the user first")
