package ldapauth

import (
	"sort"
	"strings"
)

// SearchFilterBuilder returns the filters that find a user's entry. It
// mirrors LDAP_AUTH_FORMAT_SEARCH_FILTERS. The Authenticator ANDs them into
// one filter; as in django-python3-ldap, the object-class filter is the
// builder's to add ([DefaultFilters] does).
//
// lookup maps directory attributes to the raw values to match, for example
// {"uid": "jdoe"}; a builder must escape them with [escapeFilterValue]. An
// empty lookup means "every user": [Authenticator.Sync] reads the whole
// directory view with it, so a builder must then return the filters that
// admit exactly the users who may log in (DefaultFilters gives the
// object-class filter alone, LoginGroupFilters adds the login group). cfg
// is the Authenticator's own configuration with defaults applied; it must
// not be modified. Implementations must be safe for concurrent use.
type SearchFilterBuilder interface {
	SearchFilters(cfg *Config, lookup map[string]string) ([]string, error)
}

// SearchFilterBuilderFunc adapts a function to [SearchFilterBuilder].
type SearchFilterBuilderFunc func(cfg *Config, lookup map[string]string) ([]string, error)

// SearchFilters calls f.
func (f SearchFilterBuilderFunc) SearchFilters(cfg *Config, lookup map[string]string) ([]string, error) {
	return f(cfg, lookup)
}

// FilterTerms is implemented by a [SearchFilterBuilder] whose filters are
// those of [DefaultFilters] (the username, the object class and, with
// [Config.ExcludeDisabled], the enabled filter), plus, when LoginGroupTerm
// reports true, the memberOf term of [LoginGroupFilters] for
// [Config.LoginGroup]. The built-in builders implement it, so a builder that
// wraps one by embedding it keeps its behaviour; a wrapper holding one in a
// field declares it by forwarding the method. ldapauth relies on it to
// accept ExcludeDisabled, to require LoginGroup for the term (and refuse it
// without), and to give a user the term leaves out the second look of
// LoginGroupFilters (nested groups, the primary group). A builder that does
// not implement it is checked for none of these.
type FilterTerms interface {
	SearchFilterBuilder
	LoginGroupTerm() bool
}

var (
	_ SearchFilterBuilder = SearchFilterBuilderFunc(nil)
	_ FilterTerms         = DefaultFilters{}
	_ FilterTerms         = LoginGroupFilters{}
)

// DefaultFilters returns one equality filter per lookup attribute, values
// escaped per RFC 4515, then (objectClass=<Config.ObjectClass>), then, on
// Active Directory, [filterNotComputerAD] (an Authenticator resolves
// directoryAuto when the object class is user), then, with
// [Config.ExcludeDisabled], the directory type's [filterEnabled]
// ([filterEnabledAD] for directoryAuto, which an Authenticator resolves
// before it calls a builder). It is
// django_python3_ldap.utils.format_search_filters and the default.
type DefaultFilters struct{}

// SearchFilters implements [SearchFilterBuilder].
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

// String returns the Python name of the builder.
func (DefaultFilters) String() string { return "django_python3_ldap.utils.format_search_filters" }

// LoginGroupTerm implements [FilterTerms]: DefaultFilters has no
// login-group term.
func (DefaultFilters) LoginGroupTerm() bool { return false }

// LoginGroupFilters adds (memberOf=<Config.LoginGroup>) to [DefaultFilters],
// so that only members of the login group are found and may log in. With
// [Config.NestedGroups] set to [NestedGroupsActiveDirectory] the filter is
// (memberOf:1.2.840.113556.1.4.1941:=<group>), which also finds members of
// groups in the group; for the other nesting and for Active Directory
// primary groups the Authenticator checks a user the filter leaves out, and
// with [NestedGroupsWalk] the sync's read ORs the memberOf terms of every
// group nested in the login group (docs/sync.md). Without
// a login group it would add nothing, as Flagsmith's function does, and let
// everyone in: [Config.Validate] (and so [New]) refuses that. It is
// flagsmith_ldap.ldap.login_group_search_filter (custom_auth.ldap.* in the
// flagsmith-api-ee image).
type LoginGroupFilters struct{}

// SearchFilters implements [SearchFilterBuilder].
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

// String returns the Python name of the builder.
func (LoginGroupFilters) String() string { return "flagsmith_ldap.ldap.login_group_search_filter" }

// LoginGroupTerm implements [FilterTerms]: LoginGroupFilters adds the
// login-group term.
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
