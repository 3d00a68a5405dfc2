package ldapauth

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// DirectoryType is the kind of directory server: "" (read from the root
// DSE), a constant below, or "other".
type DirectoryType string

// The directory types (docs/configuration.md).
const (
	DirectoryActiveDirectory DirectoryType = "active_directory" // Microsoft Active Directory or Samba AD
	Directory389             DirectoryType = "389ds"            // 389-DS, Red Hat Directory Server, FreeIPA
	DirectoryOpenLDAP        DirectoryType = "openldap"
)

// directoryAuto (the zero value) reads the type from the root DSE;
// directoryOther is any other server.
const (
	directoryAuto  DirectoryType = ""
	directoryOther DirectoryType = "other"
)

// parseDirectoryType parses a value of LDAP_AUTH_DIRECTORY_TYPE: auto (or
// empty), active_directory, 389ds, openldap or other, in any case.
func parseDirectoryType(v string) (DirectoryType, error) {
	switch d := DirectoryType(strings.ToLower(strings.TrimSpace(v))); d {
	case "auto", "":
		return directoryAuto, nil
	case DirectoryActiveDirectory, Directory389, DirectoryOpenLDAP, directoryOther:
		return d, nil
	}
	return directoryAuto, fmt.Errorf("%q is not one of auto, active_directory, 389ds, openldap, other", v)
}

func (d DirectoryType) valid() bool {
	switch d {
	case directoryAuto, DirectoryActiveDirectory, Directory389, DirectoryOpenLDAP, directoryOther:
		return true
	}
	return false
}

// Filters that leave disabled accounts out, per directory
// ([Config.ExcludeDisabled], [filterEnabled]).
const (
	// filterEnabled389 matches 389 Directory Server (and FreeIPA) entries
	// without nsAccountLock: true. The attribute's values compare
	// case-insensitively (true, TRUE, True), as its directory-string syntax
	// says.
	filterEnabled389 = "(!(nsAccountLock=true))"
	// filterEnabledOpenLDAP matches OpenLDAP entries that the ppolicy
	// overlay does not hold locked for good: pwdAccountLockedTime
	// 000001010000Z is how an administrator disables an account; a
	// lockout after wrong passwords (another time) is not a disabled
	// account, so an attacker cannot make the sync remove a user by
	// guessing passwords. The identity that searches needs search access to
	// pwdAccountLockedTime: without it slapd evaluates the filter as
	// undefined and finds nobody (the sync's removal guard then refuses).
	filterEnabledOpenLDAP = "(!(pwdAccountLockedTime=000001010000Z))"
)

// filterEnabled returns the filter that leaves the directory type's
// disabled accounts out: [filterEnabledAD], [filterEnabled389],
// [filterEnabledOpenLDAP], or "" for directoryAuto and directoryOther.
func filterEnabled(d DirectoryType) string {
	switch d {
	case DirectoryActiveDirectory:
		return filterEnabledAD
	case Directory389:
		return filterEnabled389
	case DirectoryOpenLDAP:
		return filterEnabledOpenLDAP
	}
	return ""
}

// oidActiveDirectoryCapability is LDAP_CAP_ACTIVE_DIRECTORY_OID, in the
// root DSE's supportedCapabilities of every Active Directory domain
// controller (and Samba's).
const oidActiveDirectoryCapability = "1.2.840.113556.1.4.800"

// directoryTypeOf tells the directory type from a root DSE entry.
func directoryTypeOf(e *ldap.Entry) DirectoryType {
	if e == nil {
		return directoryOther
	}
	if slices.Contains(e.GetEqualFoldAttributeValues("supportedCapabilities"), oidActiveDirectoryCapability) {
		return DirectoryActiveDirectory
	}
	vendor := strings.ToLower(e.GetEqualFoldAttributeValue("vendorName") + " " + e.GetEqualFoldAttributeValue("vendorVersion"))
	if strings.Contains(vendor, "389") || strings.Contains(vendor, "red hat") {
		return Directory389
	}
	for _, oc := range e.GetEqualFoldAttributeValues("objectClass") {
		if strings.EqualFold(oc, "OpenLDAProotDSE") {
			return DirectoryOpenLDAP
		}
	}
	return directoryOther
}

// needsDirectoryType reports whether the configuration depends on the
// directory type.
func (c *Config) needsDirectoryType() bool {
	// Object class user is Active Directory's, where the built-in filters
	// leave computer accounts out (filterNotComputerAD).
	return c.ExcludeDisabled || c.NestedGroups != nestedGroupsOff ||
		(strings.EqualFold(c.ObjectClass, "user") && (c.usesDefaultFilters() || c.usesLoginGroupFilters()))
}

// directoryType returns the configured directory type, or the one read
// from the root DSE over c, once per Authenticator: a type read is kept;
// a read that failed on the network is tried again on the next call.
func (a *Authenticator) directoryType(ctx context.Context, c *conn) (DirectoryType, error) {
	if a.cfg.DirectoryType != directoryAuto {
		return a.cfg.DirectoryType, nil
	}
	if d := a.detected.Load(); d != nil {
		return *d, nil
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"supportedCapabilities", "vendorName", "vendorVersion", "objectClass"}, nil))
	if err != nil && (isNetworkError(err) || ctx.Err() != nil) {
		return "", wrap(classifyNetwork(err), "reading the root DSE")
	}
	d := directoryOther // a root DSE the server will not show
	if err == nil && len(res.Entries) > 0 {
		d = directoryTypeOf(res.Entries[0])
	}
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: directory type read from the root DSE",
		slog.String("type", string(d)), slog.String("url", c.url))
	a.detected.Store(&d)
	return d, nil
}

// knownDirectoryType is the configured directory type, or the one read
// from the root DSE, or directoryAuto when none has been read yet.
func (a *Authenticator) knownDirectoryType() DirectoryType {
	if a.cfg.DirectoryType != directoryAuto {
		return a.cfg.DirectoryType
	}
	if d := a.detected.Load(); d != nil {
		return *d
	}
	return directoryAuto
}

// searchConfig returns the configuration the search filter builders get
// for a search over c: a.cfg, or, when the configuration depends on the
// directory type and it is read from the server, a copy with the type
// found. It reports a configuration that cannot work on this directory as
// a *ConfigError, before any search is sent that would fail or find
// nobody: LDAP_AUTH_NESTED_GROUPS=active_directory on a server that is not
// Active Directory, or LDAP_AUTH_EXCLUDE_DISABLED on a server whose
// disabled accounts ldapauth cannot tell.
func (a *Authenticator) searchConfig(ctx context.Context, c *conn) (*Config, error) {
	if !a.cfg.needsDirectoryType() {
		return &a.cfg, nil
	}
	d, err := a.directoryType(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := directoryFits(&a.cfg, d); err != nil {
		return nil, err
	}
	if a.cfg.DirectoryType == d {
		return &a.cfg, nil
	}
	cp := a.cfg
	cp.DirectoryType = d
	return &cp, nil
}

// directoryFits reports what cfg asks for that the directory type d
// cannot do.
func directoryFits(cfg *Config, d DirectoryType) error {
	if cfg.NestedGroups == NestedGroupsActiveDirectory && (d == Directory389 || d == DirectoryOpenLDAP) {
		return inChainUnsupported(d, nil)
	}
	if cfg.ExcludeDisabled && (d == directoryOther || d == directoryAuto) && (cfg.usesDefaultFilters() || cfg.usesLoginGroupFilters()) {
		return &ConfigError{Variables: []string{envExcludeDisabled, envDirectoryType},
			Problem: "set, but the directory is neither Active Directory, 389 Directory Server nor OpenLDAP (by LDAP_AUTH_DIRECTORY_TYPE, or by its root DSE), so ldapauth knows no attribute that marks a disabled account: set LDAP_AUTH_DIRECTORY_TYPE if it is one of them, or add your own filter with a SearchFilterBuilder"}
	}
	return nil
}

// inChainUnsupported is the configuration error of
// LDAP_AUTH_NESTED_GROUPS=active_directory on a server without
// LDAP_MATCHING_RULE_IN_CHAIN: known from the root DSE (d), or from the
// server's answer to the first search using it (err, unavailable critical
// extension, 12).
func inChainUnsupported(d DirectoryType, err error) error {
	server := "this server"
	switch d {
	case Directory389:
		server = "389 Directory Server (its memberOf plugin already lists nested groups)"
	case DirectoryOpenLDAP:
		server = "OpenLDAP"
	}
	return &ConfigError{Variables: []string{envNestedGroups}, Err: err,
		Problem: fmt.Sprintf("active_directory needs Active Directory's LDAP_MATCHING_RULE_IN_CHAIN (%s), which %s does not support: set LDAP_AUTH_NESTED_GROUPS=walk",
			oidMatchingRuleInChain, server)}
}

// inChainError turns a search answered unavailableCriticalExtension (12)
// while LDAP_AUTH_NESTED_GROUPS=active_directory into the configuration
// error, and returns any other err unchanged.
func inChainError(cfg *Config, err error) error {
	if cfg.NestedGroups == NestedGroupsActiveDirectory && ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) {
		return inChainUnsupported(cfg.DirectoryType, err)
	}
	return err
}

// AttributeRequester is implemented by a RelationSyncer or
// SearchFilterBuilder that needs more attributes of the user's entry; New
// asks once.
type AttributeRequester interface {
	RequestedAttributes(cfg *Config) []string
}

// Directory searches on the login's connection, for a RelationSyncer: valid
// only during the call that receives it, not safe for concurrent use.
type Directory interface {
	Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error)
}

// DirectoryFunc adapts a function to [Directory].
type DirectoryFunc func(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error)

func (f DirectoryFunc) Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	return f(ctx, req)
}
