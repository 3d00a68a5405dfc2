package ldapauth

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Errors of a login, matched with errors.Is (docs/errors.md). ErrUnknownUser
// also matches ErrInvalidCredentials: show a person only the latter.
var (
	ErrInvalidCredentials = errors.New("ldapauth: invalid credentials")
	ErrUnknownUser        = errors.New("ldapauth: unknown user")
	ErrNotPermitted       = errors.New("ldapauth: not permitted to log in") // right password, excluded by the filters
	ErrAmbiguousUser      = errors.New("ldapauth: more than one directory entry matches the user")
	ErrUnavailable        = errors.New("ldapauth: directory unavailable")
	ErrServiceAccount     = errors.New("ldapauth: service account bind refused") // a configuration fault
	ErrConfig             = errors.New("ldapauth: bad configuration")            // every [*ConfigError]
)

// LoginError is a refused login, never holding the password: Err is the
// reason (a sentinel), Code the directory's ("52e", "accountLocked").
// errors.Is matches Err; errors.As reaches the directory's answer.
type LoginError struct {
	Err       error
	Username  string // what was typed, at most a short prefix of it
	BindName  string
	Formatter string
	EntryDN   string
	Code      string
	Reason    string

	cause error // the directory's answer, if any
}

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

func (e *LoginError) Is(target error) bool {
	return target == ErrInvalidCredentials && (e.Err == ErrUnknownUser || e.Err == ErrIdentityMismatch || isAccountState(e.Err))
}

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

// TLSError is a TLS failure with a server, never ErrUnavailable.
type TLSError struct {
	URL string // the server's, as in LDAP_AUTH_URL
	Err error  // the TLS or StartTLS failure
}

func (e *TLSError) Error() string { return "ldapauth: TLS with " + e.URL + ": " + e.Err.Error() }

func (e *TLSError) Unwrap() error { return e.Err }

// errClosed is returned by Authenticate after Close.
var errClosed = fmt.Errorf("ldapauth: authenticator closed: %w", net.ErrClosed)

// ConfigError is one bad configuration value (never a secret's); it matches
// [ErrConfig].
type ConfigError struct {
	Variables []string // the first is the one at fault
	Problem   string
	Err       error // the cause, if any
}

func (e *ConfigError) Error() string {
	return "ldapauth: " + strings.Join(e.Variables, ", ") + ": " + e.Problem
}

func (e *ConfigError) Unwrap() error { return e.Err }

func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func configErr(problem string, vars ...string) *ConfigError {
	return &ConfigError{Variables: vars, Problem: problem}
}

// Errors of [Authenticator.Sync], in a [*SyncAbortError]: nothing removed.
// With ErrRemovalGuard the report is the plan ([SyncOptions.Force]).
var (
	ErrSyncAborted  = errors.New("ldapauth: sync aborted, nothing removed")
	ErrRemovalGuard = errors.New("ldapauth: sync refused: too many removals")
)

// SyncAbortError is a sync stopped before removing anything (the pages of
// users read before it stopped are written: docs/sync.md). It matches
// ErrSyncAborted and its cause, or only ErrRemovalGuard for the guard's.
type SyncAbortError struct {
	Phase     string // a stage of SyncProgress.Phase, or "removal guard"
	Page      int    // of users, 1-based, when reading users
	Hint      string
	Variables []string
	Err       error
}

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

func (e *SyncAbortError) Is(target error) bool { return target == ErrSyncAborted && !e.guardRefused() }

func (e *SyncAbortError) guardRefused() bool {
	_, ok := e.Err.(*guardRefusal)
	return ok
}

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

// Account states of a refused bind, each also ErrInvalidCredentials;
// [LoginError.Code] has the directory's code.
var (
	ErrAccountDisabled    = errors.New("ldapauth: account disabled")
	ErrAccountLocked      = errors.New("ldapauth: account locked")
	ErrAccountExpired     = errors.New("ldapauth: account expired")
	ErrPasswordExpired    = errors.New("ldapauth: password expired")
	ErrPasswordMustChange = errors.New("ldapauth: password must be changed")
	ErrLogonNotPermitted  = errors.New("ldapauth: logon not permitted at this time or from this workstation")
)

// isAccountState reports whether err is one of the account states.
func isAccountState(err error) bool {
	switch err {
	case ErrAccountDisabled, ErrAccountLocked, ErrAccountExpired, ErrPasswordExpired, ErrPasswordMustChange, ErrLogonNotPermitted:
		return true
	}
	return false
}

// The entry found is not the account the bind checked (also
// ErrInvalidCredentials), or nothing proves it is (use search-then-bind).
var (
	ErrIdentityMismatch = errors.New("ldapauth: the entry found is not the account whose password was checked")
	ErrIdentityUnproven = errors.New("ldapauth: cannot prove the entry found is the account whose password was checked")
)

// StoreError reports a failure of the [UserStore].
type StoreError struct {
	Op  string // the store operation, such as "save user"
	Err error  // the store's error
}

func (e *StoreError) Error() string { return "ldapauth: store: " + e.Op + ": " + unprefixed(e.Err) }

func (e *StoreError) Unwrap() error { return e.Err }

var errNoSuchGroup = errors.New("no such group")

// errNoSuchUser is MemStore's refusal to join or add a user never saved.
var errNoSuchUser = errors.New("no such user: save the user first")
