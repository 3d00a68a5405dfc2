package ldapauth

import (
	"sort"
	"strings"
)

// SearchFilterBuilder returns the filters, ANDed, that find the user's entry
// (LDAP_AUTH_FORMAT_SEARCH_FILTERS); lookup maps attributes to the values
// typed. Escape values with ldap.EscapeFilter. Safe for concurrent use.
type SearchFilterBuilder interface {
	SearchFilters(cfg *Config, lookup map[string]string) ([]string, error)
}

// SearchFilterBuilderFunc adapts a function to [SearchFilterBuilder].
type SearchFilterBuilderFunc func(cfg *Config, lookup map[string]string) ([]string, error)

func (f SearchFilterBuilderFunc) SearchFilters(cfg *Config, lookup map[string]string) ([]string, error) {
	return f(cfg, lookup)
}

// FilterTerms is a builder whose filters are DefaultFilters', with the login
// group's term if LoginGroupTerm: ldapauth may then rely on them (docs/login.md).
type FilterTerms interface {
	SearchFilterBuilder
	LoginGroupTerm() bool
}

var (
	_ SearchFilterBuilder = SearchFilterBuilderFunc(nil)
	_ FilterTerms         = DefaultFilters{}
	_ FilterTerms         = LoginGroupFilters{}
)

// DefaultFilters finds (<username attribute>=<escaped name>)
// (objectClass=<class>), leaving out computer accounts on Active Directory
// and disabled ones with ExcludeDisabled: format_search_filters, the default.
type DefaultFilters struct{}

func (DefaultFilters) SearchFilters(cfg *Config, lookup map[string]string) ([]string, error) {
	attrs := make([]string, 0, len(lookup))
	for a := range lookup {
		attrs = append(attrs, a)
	}
	sort.Strings(attrs) // a stable filter for a given lookup
	filters := make([]string, 0, len(attrs))
	for _, a := range attrs {
		filters = append(filters, "("+a+"="+escapeFilterValue(lookup[a])+")")
	}
	filters = append(filters, "(objectClass="+escapeFilterValue(cfg.ObjectClass)+")")
	if cfg.DirectoryType == DirectoryActiveDirectory {
		filters = append(filters, filterNotComputerAD)
	}
	if cfg.ExcludeDisabled {
		if f := filterEnabled(cfg.DirectoryType); f != "" {
			filters = append(filters, f)
		} else if cfg.DirectoryType == directoryAuto {
			// An Authenticator resolves directoryAuto before calling;
			// called on its own, the builder keeps its Active Directory
			// filter of old.
			filters = append(filters, filterEnabledAD)
		} else {
			return nil, &ConfigError{Variables: []string{envExcludeDisabled, envDirectoryType},
				Problem: "set, but ldapauth knows no attribute that marks a disabled account on this directory"}
		}
	}
	return filters, nil
}

func (DefaultFilters) String() string { return "django_python3_ldap.utils.format_search_filters" }

func (DefaultFilters) LoginGroupTerm() bool { return false }

// LoginGroupFilters adds (memberOf=<Config.LoginGroup>) to DefaultFilters,
// and refuses to run without a login group: Flagsmith's
// login_group_search_filter. Nesting: [Config.NestedGroups].
type LoginGroupFilters struct{}

func (LoginGroupFilters) SearchFilters(cfg *Config, lookup map[string]string) ([]string, error) {
	filters, err := DefaultFilters{}.SearchFilters(cfg, lookup)
	if err != nil {
		return nil, err
	}
	if cfg.LoginGroup != "" {
		term := cfg.loginGroupTerm
		if term == "" {
			term = memberOfFilter(cfg.NestedGroups, cfg.LoginGroup)
		}
		filters = append(filters, term)
	}
	return filters, nil
}

func (LoginGroupFilters) String() string { return "flagsmith_ldap.ldap.login_group_search_filter" }

func (LoginGroupFilters) LoginGroupTerm() bool { return true }

// escapeFilterValue escapes s for use as an assertion value in a search
// filter, per RFC 4515: the bytes *, (, ), \ and NUL become \2a, \28, \29,
// \5c and \00. UTF-8 is kept as it is (the filter is sent as UTF-8 octets),
// unlike django-python3-ldap, which leaves * unescaped.
func escapeFilterValue(s string) string {
	if !strings.ContainsAny(s, "*()\\\x00") {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '(', ')', '\\', 0:
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// userFilter builds the complete login search filter.
func userFilter(cfg *Config, builder SearchFilterBuilder, lookup map[string]string) (string, error) {
	filters, err := builder.SearchFilters(cfg, lookup)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("(&")
	for _, f := range filters {
		b.WriteString(f)
	}
	b.WriteString(")")
	return b.String(), nil
}
