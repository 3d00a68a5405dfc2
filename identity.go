package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// proveIdentity proves that entry is the account uc's bind as bindName
// checked the password of. A bind name that is the entry's DN (compared as
// DNs: types and values case-insensitively) is the proof, at no cost. For
// any other bind name the server is asked, or its own rules applied:
//
//   - DOMAIN\name (Active Directory's down-level name, unique in a domain):
//     the entry's sAMAccountName must be name and the NetBIOS name of the
//     entry's domain DOMAIN (read once from its crossRef, then cached);
//   - otherwise Who Am I (RFC 4532) on uc: "dn:<DN>" is compared with the
//     entry's DN, Active Directory's "u:DOMAIN\name" as above;
//   - where Who Am I is not supported (Samba), a name@dns bind name by
//     Active Directory's rule for user principal names, in a forest of one
//     domain: the account whose userPrincipalName is name@dns, or with none,
//     the account whose sAMAccountName is name in the domain named dns.
//
// Anything else proves nothing and refuses the login.
func (a *Authenticator) proveIdentity(ctx context.Context, uc *conn, username, bindName string, entry *ldap.Entry) error {
	if DNKey(bindName) == DNKey(entry.DN) {
		return nil
	}
	idErr := func(kind error, bound string, err error) error {
		lerr := &LoginError{Err: kind, Username: clip(username), BindName: bindName, Formatter: a.bindSource(), EntryDN: entry.DN, cause: err}
		if bound != "" {
			lerr.Reason = fmt.Sprintf("the server says the bind is %q", bound)
		}
		return lerr
	}
	verdict := func(same bool, bound string, err error) error {
		switch {
		case err != nil && (isNetworkError(err) || ctx.Err() != nil):
			return classifyNetwork(err)
		case err != nil:
			return idErr(ErrIdentityUnproven, bound, err)
		case !same:
			return idErr(ErrIdentityMismatch, bound, nil)
		}
		return nil
	}
	if domain, name, ok := downLevelName(bindName); ok {
		same, err := a.sameADAccount(ctx, uc, entry, domain, name)
		return verdict(same, "", err)
	}
	var authz string
	var err error
	if a.noWhoAmI.Load() {
		err = errWhoAmIUnsupported
	} else if authz, err = uc.whoAmI(ctx); err != nil && unsupported(err) {
		a.noWhoAmI.Store(true) // the server says so: not asked again
	}
	if err != nil {
		if isNetworkError(err) || ctx.Err() != nil {
			return classifyNetwork(err)
		}
		if unsupported(err) {
			if name, dns, ok := principalName(bindName); ok {
				same, err := a.samePrincipal(ctx, uc, entry, bindName, name, dns)
				return verdict(same, "", err)
			}
		}
		return idErr(ErrIdentityUnproven, "", fmt.Errorf("Who Am I: %w", err))
	}
	switch {
	case strings.HasPrefix(authz, "dn:"):
		return verdict(DNKey(authz[3:]) == DNKey(entry.DN), authz, nil)
	case strings.HasPrefix(authz, "u:"):
		if domain, name, ok := downLevelName(authz[2:]); ok {
			same, err := a.sameADAccount(ctx, uc, entry, domain, name)
			return verdict(same, authz, err)
		}
	}
	return idErr(ErrIdentityUnproven, authz, errors.New("the server's answer to Who Am I names no DN nor DOMAIN\\account"))
}

// errWhoAmIUnsupported stands for a server that has said it does not
// support Who Am I.
var errWhoAmIUnsupported = ldap.NewError(ldap.LDAPResultProtocolError, errors.New("Who Am I not supported by the server (answered before)"))

// unsupported reports whether err is a server's refusal of an extended
// operation it does not know: protocolError (2), as OpenLDAP's RFC says and
// GLAuth and Samba answer, or unwillingToPerform (53).
func unsupported(err error) bool {
	return ldap.IsErrorAnyOf(err, ldap.LDAPResultProtocolError, ldap.LDAPResultUnwillingToPerform)
}

// downLevelName splits DOMAIN\name; ok is false for anything else.
func downLevelName(s string) (domain, name string, ok bool) {
	domain, name, ok = strings.Cut(s, `\`)
	if !ok || domain == "" || name == "" || strings.ContainsAny(s, "=,") || strings.Contains(name, `\`) {
		return "", "", false
	}
	return domain, name, true
}

// principalName splits name@dns; ok is false for anything else.
func principalName(s string) (name, dns string, ok bool) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 || strings.ContainsAny(s, "=,\\") {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// samePrincipal applies Active Directory's rule for a bind as the user
// principal name upn (name@dns): the account whose userPrincipalName is
// upn, or when there is none, the account whose sAMAccountName is name in
// the domain whose DNS name is dns. It holds only in a forest of one
// domain (another domain's account could hold upn unseen), so a forest of
// several is refused.
func (a *Authenticator) samePrincipal(ctx context.Context, c *conn, entry *ldap.Entry, upn, name, dns string) (bool, error) {
	domainDN := domainOf(entry.DN)
	if !strings.HasPrefix(strings.ToLower(domainDN), "dc=") {
		return false, errors.New("the entry's DN has no DC= components")
	}
	single, err := a.singleDomainForest(ctx, c)
	if err != nil {
		return false, err
	}
	if !single {
		return false, errors.New("the forest has several domains, whose accounts may hold the principal name unseen from this one")
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest(domainDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false,
		"(userPrincipalName="+ldap.EscapeFilter(upn)+")", []string{"1.1"}, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return false, fmt.Errorf("search for the principal name %s: %w", upn, err)
	}
	if err != nil || len(res.Entries) > 1 {
		return false, nil // two holders: whichever the server took, not provably the entry
	}
	if len(res.Entries) == 1 {
		return DNKey(res.Entries[0].DN) == DNKey(entry.DN), nil
	}
	sam, err := a.samOf(ctx, c, entry)
	if err != nil {
		return false, err
	}
	return strings.EqualFold(sam, name) && strings.EqualFold(dnsNameOf(domainDN), dns), nil
}

// dnsNameOf returns the DNS name of a domain DN: DC=example,DC=com is
// example.com.
func dnsNameOf(domainDN string) string {
	parsed, err := ldap.ParseDN(domainDN)
	if err != nil {
		return ""
	}
	labels := make([]string, 0, len(parsed.RDNs))
	for _, rdn := range parsed.RDNs {
		if !isDCRDN(rdn) {
			return "" // not a domain
		}
		labels = append(labels, rdn.Attributes[0].Value)
	}
	return strings.Join(labels, ".")
}

// singleDomainForest reports whether the Active Directory forest holds one
// domain (one domain crossRef), read once and cached.
func (a *Authenticator) singleDomainForest(ctx context.Context, c *conn) (bool, error) {
	if v, ok := a.netbios.Load("\x00forest"); ok {
		return v.(bool), nil
	}
	partitions, err := a.partitions(ctx, c)
	if err != nil {
		return false, err
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest(partitions, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectClass=crossRef)(systemFlags:1.2.840.113556.1.4.803:=2))", []string{"1.1"}, nil))
	if err != nil {
		return false, fmt.Errorf("count the domains of the forest: %w", err)
	}
	single := len(res.Entries) == 1
	a.netbios.Store("\x00forest", single)
	return single, nil
}

// whoAmI asks the server who the connection is bound as (RFC 4532).
func (c *conn) whoAmI(ctx context.Context) (string, error) {
	var authz string
	err := c.do(ctx, func() error {
		res, err := c.l.WhoAmI(nil)
		if err == nil {
			authz = res.AuthzID
		}
		return err
	})
	return authz, err
}

// sameADAccount reports whether the Active Directory account DOMAIN\sam
// (a down-level bind name, or Who Am I's answer) is entry: a sAMAccountName
// is unique within a domain, so the entry's sAMAccountName must be sam and
// domain must name the domain holding the entry (its NetBIOS or DNS name),
// both case-insensitively.
func (a *Authenticator) sameADAccount(ctx context.Context, c *conn, entry *ldap.Entry, domain, sam string) (bool, error) {
	entrySAM, err := a.samOf(ctx, c, entry)
	if err != nil {
		return false, err
	}
	if !strings.EqualFold(entrySAM, sam) {
		return false, nil
	}
	domainDN := domainOf(entry.DN)
	if strings.EqualFold(dnsNameOf(domainDN), domain) {
		return true, nil // DOMAIN given as the domain's DNS name
	}
	netbios, err := a.netbiosName(ctx, c, domainDN)
	if err != nil {
		return false, err
	}
	return strings.EqualFold(netbios, domain), nil
}

// netbiosName returns the NetBIOS name of the Active Directory domain whose
// DN is domainDN, read once from its crossRef in the configuration
// partition and cached: it never changes.
func (a *Authenticator) netbiosName(ctx context.Context, c *conn, domainDN string) (string, error) {
	if !strings.HasPrefix(strings.ToLower(domainDN), "dc=") {
		return "", errors.New("the entry's DN has no DC= components")
	}
	key := DNKey(domainDN)
	if v, ok := a.netbios.Load(key); ok {
		return v.(string), nil
	}
	partitions, err := a.partitions(ctx, c)
	if err != nil {
		return "", err
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest(partitions, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 2, 0, false,
		"(&(objectClass=crossRef)(nCName="+ldap.EscapeFilter(domainDN)+"))", []string{"nETBIOSName"}, nil))
	if err != nil {
		return "", fmt.Errorf("read the crossRef of %s: %w", domainDN, err)
	}
	if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("nETBIOSName") == "" {
		return "", fmt.Errorf("no crossRef names the NetBIOS name of %s", domainDN)
	}
	name := res.Entries[0].GetAttributeValue("nETBIOSName")
	a.netbios.Store(key, name)
	return name, nil
}

// samOf returns the entry's sAMAccountName, read when the login search did
// not ask for it.
func (a *Authenticator) samOf(ctx context.Context, c *conn, entry *ldap.Entry) (string, error) {
	if sam := entry.GetEqualFoldAttributeValue("sAMAccountName"); sam != "" {
		return sam, nil
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest(entry.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"sAMAccountName"}, nil))
	if err != nil {
		return "", fmt.Errorf("read the sAMAccountName of %s: %w", entry.DN, err)
	}
	if len(res.Entries) == 1 {
		if sam := res.Entries[0].GetEqualFoldAttributeValue("sAMAccountName"); sam != "" {
			return sam, nil
		}
	}
	return "", fmt.Errorf("%s has no sAMAccountName to compare", entry.DN)
}

// partitions returns the DN of the forest's CN=Partitions container, from
// the root DSE's configurationNamingContext.
func (a *Authenticator) partitions(ctx context.Context, c *conn) (string, error) {
	root, err := c.Search(ctx, ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"configurationNamingContext"}, nil))
	if err != nil {
		return "", fmt.Errorf("read the root DSE: %w", err)
	}
	if len(root.Entries) != 1 || root.Entries[0].GetAttributeValue("configurationNamingContext") == "" {
		return "", errors.New("the root DSE names no configurationNamingContext: not Active Directory")
	}
	return "CN=Partitions," + root.Entries[0].GetAttributeValue("configurationNamingContext"), nil
}

// loginName returns the username of a login: the value of the username
// attribute equal, case-insensitively, to what was typed, in the
// directory's spelling. An entry with several values must hold exactly one
// such value; an entry with one value gives it (a custom filter builder may
// find users by another attribute). Anything else is ambiguous and refused:
// the name typed must never log in as another value of the entry.
func (a *Authenticator) loginName(entry *ldap.Entry, typed string) (string, error) {
	attr := a.cfg.usernameAttribute()
	values := entry.GetEqualFoldAttributeValues(attr)
	if len(values) == 0 {
		return "", fmt.Errorf("ldapauth: entry %s has no %s attribute, the username field (%s)", entry.DN, attr, envUserFields)
	}
	if len(values) == 1 {
		return values[0], nil
	}
	match := ""
	for _, v := range values {
		if strings.EqualFold(v, typed) {
			if match != "" {
				match = ""
				break
			}
			match = v
		}
	}
	if match == "" {
		return "", &LoginError{Err: ErrAmbiguousUser, Username: clip(typed),
			Reason: fmt.Sprintf("entry %s has %d %s values and not exactly one equal to the name typed", entry.DN, len(values), attr)}
	}
	return match, nil
}

// maxQuoted is how much of a username an error quotes.
const maxQuoted = 64

// clip returns s cut to at most maxQuoted bytes (on a rune boundary), with
// "..." when it was cut.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	i := maxQuoted
	for i > 0 && !utf8RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
