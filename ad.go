package ldapauth

import (
	"errors"
	"regexp"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

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

// adDiagnostic finds the data code in an Active Directory bind diagnostic,
// for example "80090308: LdapErr: DSID-0C09042F, comment:
// AcceptSecurityContext error, data 775, v2580".
var adDiagnostic = regexp.MustCompile(`AcceptSecurityContext error, data ([0-9a-fA-F]{1,8})(?:,|$)`)

// ADBindCode returns the data code of an Active Directory bind diagnostic
// (for example "52e" or "775", lower-case) found in err, an LDAP
// invalidCredentials error, and false when err holds none.
func ADBindCode(err error) (string, bool) {
	var lerr *ldap.Error
	if !errors.As(err, &lerr) || lerr.ResultCode != ldap.LDAPResultInvalidCredentials || lerr.Err == nil {
		return "", false
	}
	m := adDiagnostic.FindStringSubmatch(lerr.Err.Error())
	if m == nil {
		return "", false
	}
	return strings.ToLower(m[1]), true
}

// adAccountStates maps the Active Directory bind data codes that name an
// account state to the state. 525 (no such user) and 52e (wrong password)
// are not account states.
var adAccountStates = map[string]error{
	"530": ErrLogonNotPermitted,
	"531": ErrLogonNotPermitted,
	"532": ErrPasswordExpired,
	"533": ErrAccountDisabled,
	"701": ErrAccountExpired,
	"773": ErrPasswordMustChange,
	"775": ErrAccountLocked,
}

// adUnknownUser is the data code of a bind as a name the domain does not
// know. (Samba answers 52e instead.)
const adUnknownUser = "525"

// refusedBind turns an invalidCredentials bind error into the LoginError a
// caller sees: an account state from the password policy control or the
// Active Directory diagnostic, an unknown user (AD data 525), or plain
// invalid credentials.
func (a *Authenticator) refusedBind(err error, username, bindName string) *LoginError {
	lerr := &LoginError{Kind: ErrInvalidCredentials, Username: username, BindName: bindName,
		Formatter: a.bindSource(), Reason: "the directory refused the bind", Err: err}
	if acct := policyAccountError(err); acct != nil {
		lerr.Err = acct
		return lerr
	}
	code, ok := ADBindCode(err)
	if !ok {
		return lerr
	}
	if code == adUnknownUser {
		lerr.Kind = ErrUnknownUser
		lerr.Reason = "the directory has no user by this bind name (data 525)"
		return lerr
	}
	if kind, ok := adAccountStates[code]; ok {
		lerr.Err = &AccountError{Kind: kind, Code: code, Err: err}
	}
	return lerr
}
