package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Errors of the identity proof, matched with errors.Is (held in an
// [*IdentityError]).
var (
	// ErrIdentityMismatch means the entry the login search found is not the
	// account whose password the bind checked: a name that resolves to one
	// account for the bind and to another for the search (a mail or UPN
	// equal to another user's name, the same uid in two places). The login
	// is refused; it also matches ErrInvalidCredentials.
	ErrIdentityMismatch = errors.New("ldapauth: the entry found is not the account whose password was checked")
	// ErrIdentityUnproven means ldapauth could not prove that the entry
	// found is the account the bind checked: the bind name is not the
	// entry's DN and the server does not answer Who Am I (RFC 4532) in a
	// form ldapauth can compare. Every such login is refused; the fix is
	// LDAP_AUTH_SEARCH_THEN_BIND (or a formatter that makes the entry's
	// DN). It is a configuration fault, not the user's.
	ErrIdentityUnproven = errors.New("ldapauth: cannot prove the entry found is the account whose password was checked")
)

// IdentityError reports a login refused because the entry found could not
// be proven to be the account the bind checked. errors.Is matches its Kind
// (and ErrInvalidCredentials for ErrIdentityMismatch).
type IdentityError struct {
	// Kind is ErrIdentityMismatch or ErrIdentityUnproven.
	Kind error
	// Username is what was typed (at most a short prefix of it).
	Username string
	// BindName is the name the bind succeeded with.
	BindName string
	// Bound is the server's answer to Who Am I ("dn:..." or "u:..."), if
	// it gave one.
	Bound string
	// EntryDN is the entry the login search found.
	EntryDN string
	// Err is the cause, such as the server's refusal of Who Am I.
	Err error
}

// Error says which names disagreed, never the password.
func (e *IdentityError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	fmt.Fprintf(&b, ": bind name %q, entry %q", e.BindName, e.EntryDN)
	if e.Bound != "" {
		fmt.Fprintf(&b, ", the server says the bind is %q", e.Bound)
	}
	if e.Kind == ErrIdentityUnproven {
		b.WriteString("; set " + EnvSearchThenBind + " (with a service account) to bind as the DN found")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(unprefixed(e.Err))
	}
	return b.String()
}

// Is matches the Kind, and ErrInvalidCredentials for a mismatch.
func (e *IdentityError) Is(target error) bool {
	return target == e.Kind || (target == ErrInvalidCredentials && e.Kind == ErrIdentityMismatch)
}

// Unwrap returns the cause.
func (e *IdentityError) Unwrap() error { return e.Err }

// proveIdentity proves that entry is the account uc's bind as bindName
// checked the password of. A bind name that is the entry's DN (compared as
// DNs: types and values case-insensitively) is the proof, at no cost. Any
// other bind name (DOMAIN\user, a UPN, a bare name, or a DN the server
// resolved to another entry) costs one Who Am I on uc: "dn:<DN>" is
// compared with the entry's DN; Active Directory's "u:DOMAIN\name" with the
// entry's sAMAccountName and the NetBIOS name of the entry's domain. No
// answer, or one of another form, proves nothing and refuses the login.
func (a *Authenticator) proveIdentity(ctx context.Context, uc *conn, username, bindName string, entry *ldap.Entry) error {
	if DNKey(bindName) == DNKey(entry.DN) {
		return nil
	}
	idErr := func(kind error, bound string, err error) error {
		return &IdentityError{Kind: kind, Username: clip(username), BindName: bindName, Bound: bound, EntryDN: entry.DN, Err: err}
	}
	authz, err := uc.whoAmI(ctx)
	if err != nil {
		if isNetworkError(err) || ctx.Err() != nil {
			return classifyNetwork(err)
		}
		return idErr(ErrIdentityUnproven, "", fmt.Errorf("Who Am I: %w", err))
	}
	switch {
	case strings.HasPrefix(authz, "dn:"):
		if DNKey(authz[3:]) == DNKey(entry.DN) {
			return nil
		}
		return idErr(ErrIdentityMismatch, authz, nil)
	case strings.HasPrefix(authz, "u:") && strings.Contains(authz, `\`):
		domain, sam, _ := strings.Cut(authz[2:], `\`)
		same, err := a.sameADAccount(ctx, uc, entry, domain, sam)
		if err != nil {
			if isNetworkError(err) || ctx.Err() != nil {
				return classifyNetwork(err)
			}
			return idErr(ErrIdentityUnproven, authz, err)
		}
		if !same {
			return idErr(ErrIdentityMismatch, authz, nil)
		}
		return nil
	}
	return idErr(ErrIdentityUnproven, authz, errors.New("the server's answer to Who Am I names no DN nor DOMAIN\\account"))
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
// (Who Am I's answer) is entry: a sAMAccountName is unique within a domain,
// so the entry's sAMAccountName must be sam and the NetBIOS name of the
// domain holding the entry must be domain, both case-insensitively.
func (a *Authenticator) sameADAccount(ctx context.Context, c *conn, entry *ldap.Entry, domain, sam string) (bool, error) {
	entrySAM := entry.GetEqualFoldAttributeValue("sAMAccountName")
	if entrySAM == "" {
		res, err := c.Search(ctx, ldap.NewSearchRequest(entry.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"sAMAccountName"}, nil))
		if err != nil {
			return false, fmt.Errorf("read the sAMAccountName of %s: %w", entry.DN, err)
		}
		if len(res.Entries) == 1 {
			entrySAM = res.Entries[0].GetEqualFoldAttributeValue("sAMAccountName")
		}
		if entrySAM == "" {
			return false, fmt.Errorf("%s has no sAMAccountName to compare", entry.DN)
		}
	}
	if !strings.EqualFold(entrySAM, sam) {
		return false, nil
	}
	netbios, err := a.netbiosName(ctx, c, domainOf(entry.DN))
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
	root, err := c.Search(ctx, ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"configurationNamingContext"}, nil))
	if err != nil {
		return "", fmt.Errorf("read the root DSE: %w", err)
	}
	if len(root.Entries) != 1 || root.Entries[0].GetAttributeValue("configurationNamingContext") == "" {
		return "", errors.New("the root DSE names no configurationNamingContext")
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest("CN=Partitions,"+root.Entries[0].GetAttributeValue("configurationNamingContext"),
		ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 2, 0, false,
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
		return "", fmt.Errorf("ldapauth: entry %s has no %s attribute, the username field (%s)", entry.DN, attr, EnvUserFields)
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
		return "", &LoginError{Kind: ErrAmbiguousUser, Username: clip(typed),
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
