package ldapauth

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// NestedGroups says how membership counts through groups of groups
// (LDAP_AUTH_NESTED_GROUPS): "" (off, direct only) or a constant below.
type NestedGroups string

// The ways nesting is found (docs/configuration.md).
const (
	NestedGroupsActiveDirectory NestedGroups = "active_directory" // the server resolves it (LDAP_MATCHING_RULE_IN_CHAIN)
	NestedGroupsWalk            NestedGroups = "walk"             // any server: ldapauth follows the groups, 10 levels at most
)

// nestedGroupsOff (the zero value) counts direct membership only.
const nestedGroupsOff NestedGroups = ""

// maxNestingDepth bounds [NestedGroupsWalk]: a group more levels above the
// user than this does not count.
const maxNestingDepth = 10

// oidMatchingRuleInChain is Active Directory's LDAP_MATCHING_RULE_IN_CHAIN,
// the matching rule that follows member links transitively.
const oidMatchingRuleInChain = "1.2.840.113556.1.4.1941"

// filterEnabledAD matches Active Directory accounts whose userAccountControl
// lacks the ACCOUNTDISABLE bit (2), using LDAP_MATCHING_RULE_BIT_AND
// (1.2.840.113556.1.4.803). [Config.ExcludeDisabled] adds it to the
// built-in search filters.
const filterEnabledAD = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"

// filterNotComputerAD leaves Active Directory computer accounts out:
// computer is a subclass of user, so (objectClass=user) matches the DC's
// own account (DC1$) and every joined machine. [DefaultFilters] (and so
// [LoginGroupFilters]) adds it on Active Directory, whatever
// LDAP_AUTH_OBJECT_CLASS says; a custom [SearchFilterBuilder] adds it
// itself.
const filterNotComputerAD = "(!(objectClass=computer))"

// parseNestedGroups parses a value of LDAP_AUTH_NESTED_GROUPS: off (or
// empty), active_directory, or walk, in any case.
func parseNestedGroups(v string) (NestedGroups, error) {
	switch n := NestedGroups(strings.ToLower(strings.TrimSpace(v))); n {
	case "off", "":
		return nestedGroupsOff, nil
	case NestedGroupsActiveDirectory, NestedGroupsWalk:
		return n, nil
	}
	return nestedGroupsOff, fmt.Errorf("%q is not one of off, active_directory, walk", v)
}

func (n NestedGroups) valid() bool {
	switch n {
	case nestedGroupsOff, NestedGroupsActiveDirectory, NestedGroupsWalk:
		return true
	}
	return false
}

// memberOfFilter is the filter matching members of groupDN.
func memberOfFilter(n NestedGroups, groupDN string) string {
	if n == NestedGroupsActiveDirectory {
		return "(memberOf:" + oidMatchingRuleInChain + ":=" + escapeFilterValue(groupDN) + ")"
	}
	return "(memberOf=" + escapeFilterValue(groupDN) + ")"
}

// indirect reports whether the user belongs to g other than directly.
func (m *memberCheck) indirect(ctx context.Context, g groupRef) (bool, error) {
	if m.dir == nil {
		return false, nil
	}
	var member bool
	var err error
	switch m.cfg.NestedGroups {
	case NestedGroupsActiveDirectory:
		member, err = inChainMember(ctx, m.u, g.dn, m.dir)
	case NestedGroupsWalk:
		if m.transitive && m.u.hasMemberOf {
			// 389-DS's memberOf already lists every group above the
			// user, which direct has looked in: nothing to walk.
			break
		}
		var above map[string]struct{}
		above, err = m.groupsAbove(ctx, g)
		_, member = above[g.key]
	}
	if err != nil || member {
		return member, err
	}
	return m.primaryGroup(ctx, g)
}

// inChainMember asks Active Directory whether u's entry is a member of
// groupDN at any depth.
func inChainMember(ctx context.Context, u *User, groupDN string, dir Directory) (bool, error) {
	res, err := dir.Search(ctx, ldap.NewSearchRequest(u.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		memberOfFilter(NestedGroupsActiveDirectory, groupDN), []string{"1.1"}, nil))
	if err != nil {
		if cerr := inChainError(&Config{NestedGroups: NestedGroupsActiveDirectory}, err); cerr != err {
			return false, cerr
		}
		return false, wrap(classifyNetwork(err), "nested membership of %s in %s", u.DN, groupDN)
	}
	return len(res.Entries) > 0, nil
}

// groupsAbove returns the DN keys of the groups above the user under g's
// base (its domain): the user's groups, the groups holding them, and so on
// upwards, one search per level, at most maxNestingDepth levels, each group
// visited once (so a cycle ends). It walks once per base and user, however
// many groups are then looked up in the result.
func (m *memberCheck) groupsAbove(ctx context.Context, g groupRef) (map[string]struct{}, error) {
	if above, ok := m.ancestors[g.domain]; ok {
		return above, nil
	}
	u := m.u
	var frontier []string
	if u.hasMemberOf {
		frontier = u.Groups
	} else {
		var err error
		if frontier, err = groupsHolding(ctx, m.dir, g.base, []string{u.DN}, u.Username); err != nil {
			return nil, err
		}
	}
	above := map[string]struct{}{}
	for depth := 1; ; depth++ {
		var next []string
		for _, dn := range frontier {
			if k := DNKey(dn); !has(above, k) {
				above[k] = struct{}{}
				next = append(next, dn)
			}
		}
		if len(next) == 0 || depth >= maxNestingDepth {
			break
		}
		var err error
		if frontier, err = groupsHolding(ctx, m.dir, g.base, next, ""); err != nil {
			return nil, err
		}
	}
	if m.ancestors == nil {
		m.ancestors = map[string]map[string]struct{}{}
	}
	m.ancestors[g.domain] = above
	return above, nil
}

func has(set map[string]struct{}, key string) bool {
	_, ok := set[key]
	return ok
}

// groupsHolding returns the DNs of the groups under base that list one of
// dns as a member (member or uniqueMember), or uid as a memberUid.
// Continuation references are skipped, never chased.
func groupsHolding(ctx context.Context, dir Directory, base string, dns []string, uid string) ([]string, error) {
	const chunk = 50 // terms per filter
	var out []string
	for start := 0; start < len(dns) || (start == 0 && uid != ""); start += chunk {
		var f strings.Builder
		f.WriteString("(|")
		for _, dn := range dns[start:min(start+chunk, len(dns))] {
			v := escapeFilterValue(dn)
			f.WriteString("(member=" + v + ")(uniqueMember=" + v + ")")
		}
		if start == 0 && uid != "" {
			f.WriteString("(memberUid=" + escapeFilterValue(uid) + ")")
		}
		f.WriteString(")")
		res, err := dir.Search(ctx, ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			f.String(), []string{"1.1"}, nil))
		if err != nil {
			return nil, wrap(classifyNetwork(err), "groups holding %s", dns[start:min(start+chunk, len(dns))])
		}
		for _, e := range res.Entries {
			out = append(out, e.DN)
		}
	}
	return out, nil
}

// domainOf returns the trailing domain components (DC=...) of dn, the naming
// context a group walk searches; dn's parent when it has none.
func domainOf(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 {
		return dn
	}
	i := len(parsed.RDNs)
	for i > 0 && isDCRDN(parsed.RDNs[i-1]) {
		i--
	}
	if i == len(parsed.RDNs) {
		i = 1 // no DC components: the parent
	}
	return (&ldap.DN{RDNs: parsed.RDNs[i:]}).String()
}

func isDCRDN(r *ldap.RelativeDN) bool {
	return len(r.Attributes) == 1 && strings.EqualFold(r.Attributes[0].Type, "dc")
}

// primaryGroup reports whether g is the user's Active Directory primary
// group: AD lists a user's primary group (usually Domain Users) in neither
// the user's memberOf nor the group's member, but the user's primaryGroupID
// equals the group's primaryGroupToken (its RID), both in the same domain.
func (m *memberCheck) primaryGroup(ctx context.Context, g groupRef) (bool, error) {
	pgid := attributeValue(m.u.Attributes, "primaryGroupID")
	if pgid == "" || g.domain != m.domain {
		return false, nil
	}
	token, err := m.primaryGroupToken(ctx, g)
	return token != "" && token == pgid, err
}

// primaryGroupToken returns g's primaryGroupToken, "" when the directory
// gives none. A group's token is its RID, which never changes, so a found
// one is kept in m.tokens (the Authenticator's, when there is one) and read
// once per Authenticator rather than once per login; an absent one is
// asked again, as the group may appear.
func (m *memberCheck) primaryGroupToken(ctx context.Context, g groupRef) (string, error) {
	if m.tokens != nil {
		if token, ok := m.tokens.Load(g.key); ok {
			return token.(string), nil
		}
	}
	res, err := m.dir.Search(ctx, ldap.NewSearchRequest(g.dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"primaryGroupToken"}, nil))
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return "", nil
		}
		return "", wrap(classifyNetwork(err), "primary group token of %s", g.dn)
	}
	for _, e := range res.Entries {
		if token := e.GetEqualFoldAttributeValue("primaryGroupToken"); token != "" {
			if m.tokens != nil {
				m.tokens.Store(g.key, token)
			}
			return token, nil
		}
	}
	return "", nil
}

func attributeValue(attrs map[string][]string, name string) string {
	for k, v := range attrs {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// admission is what admitLoginGroup found.
type admission struct {
	// searched is set when the user was searched for without the
	// login-group term; entry is what that search found, or nil.
	searched bool
	entry    *ldap.Entry
	// check is the membership check that admitted entry, nil when the
	// entry was not admitted.
	check *memberCheck
}

// admitLoginGroup runs when the login search with [LoginGroupFilters] found
// nobody. It finds the user without the login-group term and admits the
// entry when the user belongs to the login group in a way the memberOf
// filter cannot see: through nested groups (NestedGroupsWalk) or as the
// user's Active Directory primary group, returning the membership check
// that said so (whose walk the synced groups reuse). An entry found but not
// admitted is returned too, for notFound.
func (a *Authenticator) admitLoginGroup(ctx context.Context, c *conn, username string) (admission, error) {
	if !a.cfg.usesLoginGroupFilters() || a.loginGroup.dn == "" {
		return admission{}, nil
	}
	entry, err := a.findUser(ctx, c, username, DefaultFilters{})
	if err != nil {
		return admission{}, err
	}
	adm := admission{searched: true, entry: entry}
	if entry == nil {
		return adm, nil
	}
	u := a.userFromEntry(entry)
	if a.cfg.NestedGroups == nestedGroupsOff && attributeValue(u.Attributes, "primaryGroupID") == "" {
		return adm, nil
	}
	check := a.newMemberCheck(u, c)
	member, err := check.indirect(ctx, a.loginGroup)
	if err != nil {
		return admission{}, err
	}
	if member {
		adm.check = check
	}
	return adm, nil
}

// readGroupMembers reads the group entry groupDN and returns its member and
// uniqueMember values (DNs) and its memberUid values (usernames), all of
// them: where Active Directory answers with at most 1500 values at a time
// (member;range=0-1499), it reads the following ranges to the end. A group
// the directory does not return (noSuchObject, or no entry) has no members
// and no error.
func readGroupMembers(ctx context.Context, dir Directory, groupDN string) (dns, uids []string, err error) {
	dns, uids, _, err = readGroup(ctx, dir, groupDN)
	return dns, uids, err
}

// groupsUnder returns the DNs of g and of the groups nested in it: the
// groups among g's member values, the groups among theirs, and so on down
// to maxNestingDepth-1 levels below g, each group read once (so a cycle
// ends). A user whose memberOf names one of them reaches g within
// maxNestingDepth levels, as the login's walk (groupsAbove) counts it. A
// group is what groupsHolding finds: an entry under g's base with member
// or uniqueMember values. They are listed by one paged search of their DNs,
// then only the groups reached are read (readGroup, with Active
// Directory's ranges). A group whose read shows no members (an access rule
// may hide them) adds nothing: the users below it are those a login's walk
// could not reach either, which the sync's second look (admitMissing) still
// gives a login's check.
func groupsUnder(ctx context.Context, c *conn, g groupRef, pageSize int) ([]string, error) {
	groups := map[string]bool{} // DNKey of every group under the base
	req := ldap.NewSearchRequest(g.base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(|(member=*)(uniqueMember=*))", []string{"1.1"}, nil)
	err := pagedSearch(ctx, c, req, pageSize, func(page *ldap.SearchResult) error {
		for _, e := range page.Entries {
			groups[DNKey(e.DN)] = true
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, wrap(classifyNetwork(err), "groups under %s", g.base)
	}
	out := []string{g.dn}
	seen := map[string]bool{g.key: true}
	frontier := []string{g.dn}
	for depth := 1; depth < maxNestingDepth && len(frontier) > 0; depth++ {
		var next []string
		for _, dn := range frontier {
			members, _, _, err := readGroup(ctx, c, dn)
			if err != nil {
				return nil, err
			}
			for _, m := range members {
				if k := DNKey(m); groups[k] && !seen[k] {
					seen[k] = true
					next = append(next, m)
				}
			}
		}
		out = append(out, next...)
		frontier = next
	}
	return out, nil
}

// anyMemberOf is the filter matching direct members of any of dns.
func anyMemberOf(dns []string) string {
	if len(dns) == 1 {
		return memberOfFilter(nestedGroupsOff, dns[0])
	}
	var b strings.Builder
	b.WriteString("(|")
	for _, dn := range dns {
		b.WriteString(memberOfFilter(nestedGroupsOff, dn))
	}
	b.WriteString(")")
	return b.String()
}
