package ldapauth

import (
	"errors"
	"regexp"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// adDiagnostic finds the data code in an Active Directory bind diagnostic,
// for example "80090308: LdapErr: DSID-0C09042F, comment:
// AcceptSecurityContext error, data 775, v2580".
var adDiagnostic = regexp.MustCompile(`AcceptSecurityContext error, data ([0-9a-fA-F]{1,8})(?:,|$)`)

// adBindCode returns the data code of an Active Directory bind diagnostic
// (for example "52e" or "775", lower-case) found in err, an LDAP
// invalidCredentials error, and false when err holds none.
func adBindCode(err error) (string, bool) {
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
	lerr := &LoginError{Err: ErrInvalidCredentials, Username: username, BindName: bindName,
		Formatter: a.bindSource(), Reason: "the directory refused the bind", cause: err}
	if st, ok := policyAccountState(err); ok {
		lerr.Err, lerr.Code = st.kind, st.code
		return lerr
	}
	code, ok := adBindCode(err)
	if !ok {
		return lerr
	}
	lerr.Code = code
	if code == adUnknownUser {
		lerr.Err = ErrUnknownUser
		lerr.Reason = "the directory has no user by this bind name"
		return lerr
	}
	if kind, ok := adAccountStates[code]; ok {
		lerr.Err = kind
	}
	return lerr
}
