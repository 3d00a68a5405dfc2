package ldapauth

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// UsernameFormatter turns the username typed into the bind name
// (LDAP_AUTH_FORMAT_USERNAME). cfg has the defaults applied and must not be
// modified; implementations must be safe for concurrent use.
type UsernameFormatter interface {
	FormatUsername(cfg *Config, username string) (string, error)
}

// UsernameFormatterFunc adapts a function to [UsernameFormatter].
type UsernameFormatterFunc func(cfg *Config, username string) (string, error)

func (f UsernameFormatterFunc) FormatUsername(cfg *Config, username string) (string, error) {
	return f(cfg, username)
}

var (
	_ UsernameFormatter = UsernameFormatterFunc(nil)
	_ UsernameFormatter = OpenLDAPFormatter{}
	_ UsernameFormatter = ActiveDirectoryFormatter{}
	_ UsernameFormatter = ActiveDirectoryPrincipalFormatter{}
)

// OpenLDAPFormatter binds as <username attribute>=<escaped name>,<search
// base>: django_python3_ldap.utils.format_username_openldap, the default.
type OpenLDAPFormatter struct{}

func (OpenLDAPFormatter) FormatUsername(cfg *Config, username string) (string, error) {
	return cfg.usernameAttribute() + "=" + escapeDNValue(username) + "," + cfg.SearchBase, nil
}

func (OpenLDAPFormatter) String() string {
	return "django_python3_ldap.utils.format_username_openldap"
}

// ActiveDirectoryFormatter binds as the name, or DOMAIN\name with
// Config.ActiveDirectoryDomain: format_username_active_directory.
type ActiveDirectoryFormatter struct{}

func (ActiveDirectoryFormatter) FormatUsername(cfg *Config, username string) (string, error) {
	if cfg.ActiveDirectoryDomain == "" {
		return username, nil
	}
	return cfg.ActiveDirectoryDomain + `\` + username, nil
}

func (ActiveDirectoryFormatter) String() string {
	return "django_python3_ldap.utils.format_username_active_directory"
}

// ActiveDirectoryPrincipalFormatter binds as name@domain
// (Config.ActiveDirectoryDomain): format_username_active_directory_principal.
type ActiveDirectoryPrincipalFormatter struct{}

func (ActiveDirectoryPrincipalFormatter) FormatUsername(cfg *Config, username string) (string, error) {
	if cfg.ActiveDirectoryDomain == "" {
		return "", configErr("the principal formatter needs a domain", envADDomain, envFormatUsername)
	}
	return username + "@" + cfg.ActiveDirectoryDomain, nil
}

// domainFormatter is implemented by a formatter that cannot make a bind name
// without Config.ActiveDirectoryDomain, so that Validate refuses the
// configuration rather than every login. The principal formatter implements
// it, and so does a wrapper that embeds it (the method is promoted).
type domainFormatter interface{ needsDomain() bool }

func (ActiveDirectoryPrincipalFormatter) needsDomain() bool { return true }

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
