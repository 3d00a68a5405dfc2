package ldapauth

import (
	"errors"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The user's bind carries the password policy request control
// (draft-behera-ldap-password-policy, OID 1.3.6.1.4.1.42.2.27.8.5.1), not
// critical, so servers without a password policy (Active Directory among
// them) ignore it. OpenLDAP's ppolicy overlay answers with a response
// control saying why a bind was refused (accountLocked, passwordExpired),
// that the password must be changed although the bind succeeded
// (changeAfterReset: every other operation is then refused), or how long a
// good password has left (timeBeforeExpiration, graceAuthNsRemaining).

// PasswordWarning is the password policy's warning at a login: time before
// expiry (0: not said), or grace logins left (-1: not said).
type PasswordWarning struct {
	ExpiresIn   time.Duration `json:"expires_in,omitempty"`
	GraceLogins int           `json:"grace_logins"`
}

// policyBindError is a refused bind with the password policy response
// control the server sent with it.
type policyBindError struct {
	err  error
	ctrl *ldap.ControlBeheraPasswordPolicy
}

func (e *policyBindError) Error() string { return e.err.Error() }
func (e *policyBindError) Unwrap() error { return e.err }

// withPolicy attaches the password policy response control among ctrls, if
// any, to a refused bind's err.
func withPolicy(err error, ctrls []ldap.Control) error {
	if ctrl := policyControl(ctrls); ctrl != nil && ctrl.Error >= 0 {
		return &policyBindError{err: err, ctrl: ctrl}
	}
	return err
}

func policyControl(ctrls []ldap.Control) *ldap.ControlBeheraPasswordPolicy {
	ctrl, _ := ldap.FindControl(ctrls, ldap.ControlTypeBeheraPasswordPolicy).(*ldap.ControlBeheraPasswordPolicy)
	return ctrl
}

// accountState is an account state a directory gave, with its own code.
type accountState struct {
	kind error
	code string
}

// policyStates maps the password policy errors a bind can give.
var policyStates = map[int8]accountState{
	ldap.BeheraPasswordExpired:  {ErrPasswordExpired, "passwordExpired"},
	ldap.BeheraAccountLocked:    {ErrAccountLocked, "accountLocked"},
	ldap.BeheraChangeAfterReset: {ErrPasswordMustChange, "changeAfterReset"},
}

// policyAccountState returns the account state of a refused bind carrying
// a password policy control, or nil. accountLocked on an
// unwillingToPerform (53) answer is a disabled account: 389 Directory
// Server (and so FreeIPA) answers so for nsAccountLock: true ("Account
// inactivated"), and a lockout after wrong passwords with
// constraintViolation (19) or invalidCredentials (49).
func policyAccountState(err error) (accountState, bool) {
	var perr *policyBindError
	if !errors.As(err, &perr) {
		return accountState{}, false
	}
	s, ok := policyStates[perr.ctrl.Error]
	if !ok {
		return accountState{}, false
	}
	if perr.ctrl.Error == ldap.BeheraAccountLocked && ldap.IsErrorWithCode(perr.err, ldap.LDAPResultUnwillingToPerform) {
		return accountState{ErrAccountDisabled, s.code}, true
	}
	return s, true
}

// afterGoodBind reads the password policy control of a successful bind: an
// account state that refuses the login anyway (changeAfterReset), or a
// warning for the user, or neither.
func afterGoodBind(ctrls []ldap.Control) (*PasswordWarning, *accountState) {
	ctrl := policyControl(ctrls)
	if ctrl == nil {
		return nil, nil
	}
	if s, ok := policyStates[ctrl.Error]; ok {
		return nil, &s
	}
	if ctrl.Expire < 0 && ctrl.Grace < 0 {
		return nil, nil
	}
	w := &PasswordWarning{GraceLogins: -1}
	if ctrl.Expire >= 0 {
		w.ExpiresIn = time.Duration(ctrl.Expire) * time.Second
	}
	if ctrl.Grace >= 0 {
		w.GraceLogins = int(ctrl.Grace)
	}
	return w, nil
}
