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
)

// LoginError reports a refused login with what a person debugging it needs:
// the bind name tried, the formatter that made it, the directory's code. It
// never holds the password. errors.Is matches Err, and
// [ErrInvalidCredentials] too when Err is [ErrUnknownUser],
// [ErrIdentityMismatch] or an account state; errors.As reaches the
// directory's own answer.
type LoginError struct {
	// Err is the reason: ErrInvalidCredentials, ErrUnknownUser,
	// ErrNotPermitted, ErrAmbiguousUser, an account state such as
	// ErrAccountLocked, ErrIdentityMismatch or ErrIdentityUnproven.
	Err error
	// Username is what was typed (at most a short prefix of it).
	Username string
	// BindName is the name the bind was tried with, if any, and Formatter
	// the username formatter (or search-then-bind) that made it.
	BindName  string
	Formatter string
	// EntryDN is the entry the login search found, for an identity refusal.
	EntryDN string
	// Code is the directory's own code, when it gave one: the data code of
	// an Active Directory bind diagnostic ("52e", "775"), or the password
	// policy error ("accountLocked").
	Code string
	// Reason says what happened, in words.
	Reason string

	cause error // the directory's answer, if any
}

// Error says why the login was refused, with the names involved, never the
// password.
func (e *LoginError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.BindName != "" {
		fmt.Fprintf(&b, " (bind name %q from %s)", e.BindName, e.Formatter)
	}
	if e.EntryDN != "" {
		fmt.Fprintf(&b, ", entry %q", e.EntryDN)
	}
	if e.Err == ErrIdentityUnproven {
		b.WriteString("; set " + envSearchThenBind + " (with a service account) to bind as the DN found")
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(unprefixed(e.cause))
	}
	return b.String()
}

// Is reports whether target is ErrInvalidCredentials and Err implies it.
func (e *LoginError) Is(target error) bool {
	return target == ErrInvalidCredentials && (e.Err == ErrUnknownUser || e.Err == ErrIdentityMismatch || isAccountState(e.Err))
}

// Unwrap returns Err and the directory's answer.
func (e *LoginError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.cause}
}

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
	// ErrSyncAborted means the sync stopped before writing anything: the
	// sync account could not bind, a search failed, hit a size or time
	// limit or was answered with referrals only, the connection was lost,
	// or ctx ended during the read. The error is a [*SyncAbortError] that
	// also matches its cause (ErrUnavailable, ErrServiceAccount,
	// context.Canceled, ...).
	ErrSyncAborted = errors.New("ldapauth: sync aborted, nothing written")
	// ErrRemovalGuard means the sync refused to remove as many users,
	// synced groups or memberships as it planned (see
	// [Config.SyncMaxRemovalPercent]) and wrote nothing. The error is a
	// [*SyncAbortError] (which does not match ErrSyncAborted); the report
	// returned with it is the plan, its RemovalGuard the figures. Check it,
	// then run again with [SyncOptions.Force].
	ErrRemovalGuard = errors.New("ldapauth: sync refused: too many removals")
)

// SyncAbortError reports a sync that stopped before writing anything. It
// matches [ErrSyncAborted] and, through Unwrap, its cause; a refusal of the
// removal guard (Phase "removal guard") matches [ErrRemovalGuard] instead,
// and comes with the report of the plan.
type SyncAbortError struct {
	// Phase is where the run stopped: a stage of [SyncProgress.Phase], or
	// "removal guard".
	Phase string
	// Page is the page of users being read (1-based) in syncReadUsers.
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
	if e.guardRefused() {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(ErrSyncAborted.Error())
		b.WriteString(": ")
		b.WriteString(e.Phase)
	}
	if e.Page > 0 {
		fmt.Fprintf(&b, ", page %d", e.Page)
	}
	if e.Err != nil && !e.guardRefused() {
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

// Is reports whether target is ErrSyncAborted (for any stop but the removal
// guard's).
func (e *SyncAbortError) Is(target error) bool { return target == ErrSyncAborted && !e.guardRefused() }

func (e *SyncAbortError) guardRefused() bool {
	_, ok := e.Err.(*guardRefusal)
	return ok
}

// Unwrap returns the cause.
func (e *SyncAbortError) Unwrap() error { return e.Err }

// guardRefusal is the cause of a [*SyncAbortError] the removal guard
// returns: what it would remove, of how many. It matches [ErrRemovalGuard].
type guardRefusal struct {
	guard          RemovalGuard
	emptyDirectory bool // the directory returned no user while the sync would remove some
}

func (e *guardRefusal) Error() string {
	if e.emptyDirectory {
		return fmt.Sprintf("%s: the directory returned no user, the sync would remove all %d directory-managed users", ErrRemovalGuard, e.guard.Users.Remove)
	}
	var over []string
	for _, k := range []struct {
		what string
		c    RemovalCount
	}{{"directory-managed users", e.guard.Users}, {"synced groups", e.guard.Groups}, {"memberships of synced groups", e.guard.Memberships}} {
		if k.c.OverLimit {
			over = append(over, fmt.Sprintf("%d of %d %s (%.1f%%)", k.c.Remove, k.c.Total, k.what, 100*float64(k.c.Remove)/float64(max(k.c.Total, 1))))
		}
	}
	return fmt.Sprintf("%s: %s, above %s=%d and the allowance of %d",
		ErrRemovalGuard, strings.Join(over, "; "), envSyncMaxRemoval, e.guard.LimitPercent, e.guard.Allowance)
}

func (e *guardRefusal) Is(target error) bool { return target == ErrRemovalGuard }

// Account states a directory reports on a refused bind, matched with
// errors.Is. Every error that matches one of them also matches
// [ErrInvalidCredentials], so a caller that only checks for a failed login
// keeps working, while a UI can tell a person "your password expired". They
// come from the Active Directory bind diagnostic (data 530 ... 775) and from
// the password policy response control of OpenLDAP and others
// (draft-behera-ldap-password-policy). [LoginError.Code] holds the code.
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

// isAccountState reports whether err is one of the account states.
func isAccountState(err error) bool {
	switch err {
	case ErrAccountDisabled, ErrAccountLocked, ErrAccountExpired, ErrPasswordExpired, ErrPasswordMustChange, ErrLogonNotPermitted:
		return true
	}
	return false
}

// Errors of the identity proof, matched with errors.Is (held in a
// [*LoginError] with the EntryDN).
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
