package ldapauth

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// UsernameFormatter turns the username a person typed into the name the
// Authenticator binds as. It mirrors LDAP_AUTH_FORMAT_USERNAME.
//
// cfg is the Authenticator's own configuration with defaults applied; it
// must not be modified. Implementations must be safe for concurrent use.
type UsernameFormatter interface {
	FormatUsername(cfg *Config, username string) (string, error)
}

// UsernameFormatterFunc adapts a function to [UsernameFormatter].
type UsernameFormatterFunc func(cfg *Config, username string) (string, error)

// FormatUsername calls f.
func (f UsernameFormatterFunc) FormatUsername(cfg *Config, username string) (string, error) {
	return f(cfg, username)
}

var (
	_ UsernameFormatter = UsernameFormatterFunc(nil)
	_ UsernameFormatter = OpenLDAPFormatter{}
	_ UsernameFormatter = ActiveDirectoryFormatter{}
	_ UsernameFormatter = ActiveDirectoryPrincipalFormatter{}
)

// OpenLDAPFormatter binds as <username attribute>=<username>,<search base>,
// for example uid=jdoe,ou=people,dc=example,dc=com, with the value escaped
// per RFC 4514. It is django_python3_ldap.utils.format_username_openldap and
// the default.
type OpenLDAPFormatter struct{}

// FormatUsername implements [UsernameFormatter].
func (OpenLDAPFormatter) FormatUsername(cfg *Config, username string) (string, error) {
	return cfg.usernameAttribute() + "=" + escapeDNValue(username) + "," + cfg.SearchBase, nil
}

// String returns the Python name of the formatter.
func (OpenLDAPFormatter) String() string {
	return "django_python3_ldap.utils.format_username_openldap"
}

// ActiveDirectoryFormatter binds as the plain username, or DOMAIN\username
// when [Config.ActiveDirectoryDomain] is set. It is
// django_python3_ldap.utils.format_username_active_directory.
type ActiveDirectoryFormatter struct{}

// FormatUsername implements [UsernameFormatter].
func (ActiveDirectoryFormatter) FormatUsername(cfg *Config, username string) (string, error) {
	if cfg.ActiveDirectoryDomain == "" {
		return username, nil
	}
	return cfg.ActiveDirectoryDomain + `\` + username, nil
}

// String returns the Python name of the formatter.
func (ActiveDirectoryFormatter) String() string {
	return "django_python3_ldap.utils.format_username_active_directory"
}

// ActiveDirectoryPrincipalFormatter binds as the user principal name
// username@domain, the domain being [Config.ActiveDirectoryDomain]. It is
// django_python3_ldap.utils.format_username_active_directory_principal.
type ActiveDirectoryPrincipalFormatter struct{}

// FormatUsername implements [UsernameFormatter].
func (ActiveDirectoryPrincipalFormatter) FormatUsername(cfg *Config, username string) (string, error) {
	if cfg.ActiveDirectoryDomain == "" {
		return "", configErr("the principal formatter needs a domain", envADDomain, envFormatUsername)
	}
	return username + "@" + cfg.ActiveDirectoryDomain, nil
}

// String returns the Python name of the formatter.
func (ActiveDirectoryPrincipalFormatter) String() string {
	return "django_python3_ldap.utils.format_username_active_directory_principal"
}

// formatterName names f in error messages.
func formatterName(f any) string {
	if s, ok := f.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", f)
}

// escapeDNValue escapes s for use as an attribute value in a DN, per RFC 4514
// section 2.4: the characters " + , ; < > \ anywhere, a leading space or #,
// a trailing space, and NUL (as \00); = is escaped too (RFC 4514 allows it,
// and some servers' parsers need it). Other bytes, UTF-8 included, are kept.
func escapeDNValue(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			b.WriteString(`\00`)
		case c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\' || c == '=':
			b.WriteByte('\\')
			b.WriteByte(c)
		case i == 0 && (c == ' ' || c == '#'):
			b.WriteByte('\\')
			b.WriteByte(c)
		case i == len(s)-1 && c == ' ':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// validCredentialText reports whether s can be sent as a username or
// password: non-empty, valid UTF-8 and free of NUL bytes.
func validCredentialText(s string) bool {
	return s != "" && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
