package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bindErr is an invalidCredentials error as go-ldap returns it, with the
// server's diagnostic message.
func bindErr(diagnostic string) error {
	return ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New(diagnostic))
}

func TestADBindCode(t *testing.T) {
	tests := []struct {
		name, diagnostic string
		code             string
		ok               bool
	}{
		// Samba 4.17, exactly as internal/sambatest records it.
		{"samba 52e", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1", "52e", true},
		{"samba 533", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1", "533", true},
		{"samba 775", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 775, v1db1", "775", true},
		// Windows Server 2008 R2 ... 2022, as administrators post them.
		{"ad 2008 525", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 525, v1db1", "525", true},
		{"ad 2012 52e", "80090308: LdapErr: DSID-0C0903C5, comment: AcceptSecurityContext error, data 52e, v2580", "52e", true},
		{"ad 2016 530", "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 530, v2580", "530", true},
		{"ad 531", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 531, v1db1", "531", true},
		{"ad 532", "80090308: LdapErr: DSID-0C09042F, comment: AcceptSecurityContext error, data 532, v2580", "532", true},
		{"ad 701", "80090308: LdapErr: DSID-0C090447, comment: AcceptSecurityContext error, data 701, v3839", "701", true},
		{"ad 2019 773", "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 773, v4563", "773", true},
		{"ad 2022 775", "80090308: LdapErr: DSID-0C090439, comment: AcceptSecurityContext error, data 775, v4f7c", "775", true},
		{"upper-case hex", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52E, v1db1", "52e", true},
		{"trailing NUL-free end", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 775", "775", true},
		{"openldap", "", "", false},
		{"other server", "Invalid credentials", "", false},
		{"not a code", "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data xyz, v1db1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ok := adBindCode(bindErr(tt.diagnostic))
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.code, code)
			wrapped, ok := adBindCode(fmt.Errorf("bind: %w", bindErr(tt.diagnostic)))
			assert.Equal(t, tt.ok, ok, "found through wrapping")
			assert.Equal(t, tt.code, wrapped)
		})
	}
	t.Run("other result code", func(t *testing.T) {
		_, ok := adBindCode(ldap.NewError(ldap.LDAPResultUnwillingToPerform,
			errors.New("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1")))
		assert.False(t, ok)
	})
	t.Run("not an LDAP error", func(t *testing.T) {
		_, ok := adBindCode(errors.New("AcceptSecurityContext error, data 533, v1db1"))
		assert.False(t, ok)
	})
}

func FuzzADBindCode(f *testing.F) {
	f.Add("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1")
	f.Add("AcceptSecurityContext error, data ")
	f.Fuzz(func(t *testing.T, diagnostic string) {
		code, ok := adBindCode(bindErr(diagnostic))
		if ok {
			require.NotEmpty(t, code)
			require.LessOrEqual(t, len(code), 8)
		} else {
			require.Empty(t, code)
		}
	})
}

func TestRefusedBind(t *testing.T) {
	a, err := New(&Config{URLs: []string{"ldap://127.0.0.1:1"}, FormatUsername: ActiveDirectoryFormatter{}, ActiveDirectoryDomain: "CORP"})
	require.NoError(t, err)
	diag := func(code string) error {
		return bindErr("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data " + code + ", v1db1")
	}
	policy := func(code int8) error {
		ctrl := ldap.NewControlBeheraPasswordPolicy()
		ctrl.Error = code
		return withPolicy(bindErr(""), []ldap.Control{ctrl})
	}
	tests := []struct {
		name  string
		err   error
		kind  error // the account state, nil for none
		code  string
		isNot []error
	}{
		{"52e wrong password", diag("52e"), nil, "52e", []error{ErrUnknownUser, ErrAccountLocked}},
		{"525 unknown user", diag("525"), ErrUnknownUser, "525", nil},
		{"530 logon hours", diag("530"), ErrLogonNotPermitted, "530", nil},
		{"531 workstation", diag("531"), ErrLogonNotPermitted, "531", nil},
		{"532 password expired", diag("532"), ErrPasswordExpired, "532", []error{ErrPasswordMustChange}},
		{"533 disabled", diag("533"), ErrAccountDisabled, "533", []error{ErrUnknownUser}},
		{"701 account expired", diag("701"), ErrAccountExpired, "701", []error{ErrPasswordExpired}},
		{"773 must change", diag("773"), ErrPasswordMustChange, "773", nil},
		{"775 locked", diag("775"), ErrAccountLocked, "775", []error{ErrAccountDisabled}},
		{"unmapped code", diag("568"), nil, "568", nil},
		{"no diagnostic", bindErr(""), nil, "", nil},
		{"ppolicy locked", policy(ldap.BeheraAccountLocked), ErrAccountLocked, "accountLocked", nil},
		{"ppolicy expired", policy(ldap.BeheraPasswordExpired), ErrPasswordExpired, "passwordExpired", nil},
		{"ppolicy change after reset", policy(ldap.BeheraChangeAfterReset), ErrPasswordMustChange, "changeAfterReset", nil},
		{"ppolicy other error", policy(ldap.BeheraPasswordTooShort), nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.bindError(context.Background(), tt.err, "jdoe", `CORP\jdoe`)
			require.ErrorIs(t, err, ErrInvalidCredentials, "a naive caller sees a failed login")
			var lerr *LoginError
			require.ErrorAs(t, err, &lerr)
			assert.Equal(t, `CORP\jdoe`, lerr.BindName)
			assert.True(t, ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials), "the directory's error is still reachable")
			assert.Equal(t, tt.code, lerr.Code)
			switch {
			case tt.kind == nil:
				assert.Equal(t, ErrInvalidCredentials, lerr.Err)
				assert.False(t, isAccountState(lerr.Err))
			case tt.kind == ErrUnknownUser:
				assert.ErrorIs(t, err, ErrUnknownUser)
				assert.False(t, isAccountState(lerr.Err))
			default:
				assert.ErrorIs(t, err, tt.kind)
				assert.Equal(t, tt.kind, lerr.Err)
				assert.Contains(t, err.Error(), "("+tt.code+")", "the message names the directory's code")
			}
			for _, not := range tt.isNot {
				assert.NotErrorIs(t, err, not)
			}
		})
	}
}

func TestAfterGoodBind(t *testing.T) {
	ctrl := func(errCode int8, expire, grace int64) []ldap.Control {
		c := ldap.NewControlBeheraPasswordPolicy()
		c.Error, c.Expire, c.Grace = errCode, expire, grace
		return []ldap.Control{c}
	}
	tests := []struct {
		name    string
		ctrls   []ldap.Control
		warning *PasswordWarning
		kind    error
	}{
		{"no control", nil, nil, nil},
		{"empty control", ctrl(-1, -1, -1), nil, nil},
		{"change after reset", ctrl(ldap.BeheraChangeAfterReset, -1, -1), nil, ErrPasswordMustChange},
		{"expires soon", ctrl(-1, 3600, -1), &PasswordWarning{ExpiresIn: 3600e9, GraceLogins: -1}, nil},
		{"grace logins", ctrl(-1, -1, 2), &PasswordWarning{GraceLogins: 2}, nil},
		{"last grace login", ctrl(-1, -1, 0), &PasswordWarning{GraceLogins: 0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, acct := afterGoodBind(tt.ctrls)
			assert.Equal(t, tt.warning, w)
			if tt.kind == nil {
				assert.Nil(t, acct)
			} else {
				require.NotNil(t, acct)
				assert.Equal(t, tt.kind, acct.kind)
				lerr := &LoginError{Err: acct.kind, Code: acct.code}
				assert.ErrorIs(t, lerr, tt.kind)
				assert.ErrorIs(t, lerr, ErrInvalidCredentials)
			}
		})
	}
}

// TestBindResults: a bind refused for the account (389-DS's 19 and 53 with
// the password policy's accountLocked) or for the bind name (34) is a
// refused login; other answers are the server's errors.
func TestBindResults(t *testing.T) {
	a, err := New(&Config{URLs: []string{"ldap://127.0.0.1:1"}})
	require.NoError(t, err)
	locked := func(code uint16, msg string) error {
		ctrl := ldap.NewControlBeheraPasswordPolicy()
		ctrl.Error = ldap.BeheraAccountLocked
		return withPolicy(ldap.NewError(code, errors.New(msg)), []ldap.Control{ctrl})
	}
	tests := []struct {
		name    string
		err     error
		refused bool  // matches ErrInvalidCredentials
		kind    error // account state, nil for none
		not     []error
	}{
		{"389-DS lockout (19 + accountLocked)", locked(ldap.LDAPResultConstraintViolation, "Exceed password retry limit. Please try later."),
			true, ErrAccountLocked, []error{ErrAccountDisabled, ErrUnavailable}},
		{"389-DS nsAccountLock (53 + accountLocked)", locked(ldap.LDAPResultUnwillingToPerform, "Account inactivated. Contact system administrator."),
			true, ErrAccountDisabled, []error{ErrAccountLocked, ErrUnavailable}},
		{"49 + accountLocked", locked(ldap.LDAPResultInvalidCredentials, ""), true, ErrAccountLocked, nil},
		{"34 invalid DN syntax", ldap.NewError(ldap.LDAPResultInvalidDNSyntax, errors.New("invalid DN")), true, nil, []error{ErrUnavailable}},
		{"32 no such object", ldap.NewError(ldap.LDAPResultNoSuchObject, errors.New("")), false, nil, nil},
		{"19 without the control", ldap.NewError(ldap.LDAPResultConstraintViolation, errors.New("")), false, nil, []error{ErrUnavailable}},
		{"53 without the control", ldap.NewError(ldap.LDAPResultUnwillingToPerform, errors.New("")), false, nil, []error{ErrUnavailable}},
		{"80 other", ldap.NewError(ldap.LDAPResultOther, errors.New("")), false, nil, []error{ErrUnavailable}},
		{"51 busy", ldap.NewError(ldap.LDAPResultBusy, errors.New("")), false, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.bindError(context.Background(), tt.err, "jdoe", "uid=jdoe,ou=people,dc=example,dc=com")
			require.Error(t, err)
			var lerr *ldap.Error
			require.ErrorAs(t, err, &lerr, "the directory's answer stays reachable")
			if !tt.refused {
				assert.NotErrorIs(t, err, ErrInvalidCredentials)
				var login *LoginError
				assert.False(t, errors.As(err, &login))
			} else {
				assert.ErrorIs(t, err, ErrInvalidCredentials)
				var login *LoginError
				require.ErrorAs(t, err, &login)
				assert.Equal(t, "uid=jdoe,ou=people,dc=example,dc=com", login.BindName)
			}
			if tt.kind != nil {
				assert.ErrorIs(t, err, tt.kind)
				var login *LoginError
				require.ErrorAs(t, err, &login)
				assert.Equal(t, "accountLocked", login.Code)
			}
			for _, not := range tt.not {
				assert.NotErrorIs(t, err, not)
			}
		})
	}
	assert.ErrorIs(t, a.bindError(context.Background(), ldap.NewError(ldap.LDAPResultBusy, errors.New("")), "jdoe", "x"), ErrUnavailable)
}
