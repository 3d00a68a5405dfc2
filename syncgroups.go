package ldapauth

import (
	"context"
	"errors"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// RelationSyncer runs after every successful login, with the user as read
// from the directory. It mirrors LDAP_AUTH_SYNC_USER_RELATIONS.
//
// cfg is the Authenticator's own configuration with defaults applied (its
// Store is where relations go); it must not be modified. dir searches the
// directory on the login's connection. An error fails the login.
// Implementations must be safe for concurrent use.
type RelationSyncer interface {
	SyncRelations(ctx context.Context, cfg *Config, u *User, dir Directory) error
}

// RelationSyncerFunc adapts a function to [RelationSyncer].
type RelationSyncerFunc func(ctx context.Context, cfg *Config, u *User, dir Directory) error

// SyncRelations calls f.
func (f RelationSyncerFunc) SyncRelations(ctx context.Context, cfg *Config, u *User, dir Directory) error {
	return f(ctx, cfg, u, dir)
}

// AttributeRequester is implemented by a [RelationSyncer] or
// [SearchFilterBuilder] that needs attributes of the user's entry besides
// the mapped fields and memberOf; the login search then asks for them.
type AttributeRequester interface {
	RequestedAttributes(cfg *Config) []string
}

// Directory searches the directory on behalf of a [RelationSyncer].
type Directory interface {
	Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error)
}

var (
	_ RelationSyncer = RelationSyncerFunc(nil)
	_ RelationSyncer = NoRelations{}
	_ RelationSyncer = SyncUserGroups{}
)

// NoRelations does nothing. It is django_python3_ldap.utils.sync_user_relations
// and the default.
type NoRelations struct{}

// SyncRelations implements [RelationSyncer].
func (NoRelations) SyncRelations(context.Context, *Config, *User, Directory) error { return nil }

// String returns the Python name of the syncer.
func (NoRelations) String() string { return "django_python3_ldap.utils.sync_user_relations" }

// SyncUserGroups is Flagsmith's sync_user_groups
// (flagsmith_ldap.ldap.sync_user_groups, custom_auth.ldap.sync_user_groups).
// On every login it
//   - adds the user to [Config.OrganisationID] (again, harmlessly, for a
//     returning user);
//   - for each DN in [Config.SyncedGroups]: when the user is a member,
//     creates the group in the store if missing and adds the user to it;
//     when not, removes the user from it.
//
// Membership is read from the user's memberOf; for a user entry without
// memberOf (directories without the memberOf overlay), from the group's
// member, uniqueMember (user DN) or memberUid (username) values, read to
// the end of Active Directory's ranges. DNs are compared parsed and
// case-insensitively. With [Config.NestedGroups] membership through groups
// of groups counts too; a group that is the user's Active Directory primary
// group (primaryGroupID) always counts.
type SyncUserGroups struct{}

// String returns the Python name of the syncer.
func (SyncUserGroups) String() string { return "flagsmith_ldap.ldap.sync_user_groups" }

// SyncRelations implements [RelationSyncer].
func (SyncUserGroups) SyncRelations(ctx context.Context, cfg *Config, u *User, dir Directory) error {
	store := cfg.Store
	if store == nil {
		return configErr("the group syncer needs Config.Store", EnvSyncRelations)
	}
	if err := store.JoinOrganisation(ctx, u.Username, cfg.OrganisationID); err != nil {
		return &StoreError{Op: "join organisation", Err: err}
	}
	for _, groupDN := range cfg.SyncedGroups {
		member, err := memberOfGroup(ctx, cfg, u, groupDN, dir)
		if err != nil {
			return err
		}
		if member {
			if err := store.SaveGroup(ctx, Group{DN: groupDN, Name: GroupName(groupDN)}); err != nil {
				return &StoreError{Op: "save group", Err: err}
			}
		}
		if err := store.SetMember(ctx, groupDN, u.Username, member); err != nil {
			return &StoreError{Op: "set member", Err: err}
		}
	}
	return nil
}

// isMember reports whether u belongs to the group groupDN.
func isMember(ctx context.Context, u *User, groupDN string, dir Directory) (bool, error) {
	if u.hasMemberOf {
		return containsDN(u.Groups, groupDN), nil
	}
	if dir == nil {
		return false, nil
	}
	dns, uids, err := ReadGroupMembers(ctx, dir, groupDN)
	if err != nil {
		return false, err
	}
	if containsDN(dns, u.DN) {
		return true, nil
	}
	for _, uid := range uids {
		if strings.EqualFold(uid, u.Username) {
			return true, nil
		}
	}
	return false, nil
}

// containsDN reports whether dns holds dn, compared as parsed DNs,
// case-insensitively.
func containsDN(dns []string, dn string) bool {
	want, err := ldap.ParseDN(dn)
	if err != nil {
		return false
	}
	for _, d := range dns {
		if strings.EqualFold(d, dn) {
			return true
		}
		if got, err := ldap.ParseDN(d); err == nil && got.EqualFold(want) {
			return true
		}
	}
	return false
}

// StoreError reports a failure of the [UserStore].
type StoreError struct {
	Op  string
	Err error
}

func (e *StoreError) Error() string { return "ldapauth: store: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the store's error.
func (e *StoreError) Unwrap() error { return e.Err }

var errNoSuchGroup = errors.New("no such group")
