package ldapauth

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// SyncProgress says how far a sync run has come.
type SyncProgress struct {
	// Phase is the stage the run is in: "read store", "bind", "read
	// users", "read groups", "apply", then "done".
	Phase string `json:"phase"`
	// Pages is the number of pages of users read so far.
	Pages int `json:"pages"`
	// Users is the number of user entries read so far.
	Users int `json:"users"`
	// Groups is the number of group entries read so far.
	Groups int `json:"groups"`
	// Done and Total count the store writes of the apply phase.
	Done  int `json:"done"`
	Total int `json:"total"`
}

// Membership is one user in one group.
type Membership struct {
	// GroupDN is the synced group's DN, as configured.
	GroupDN string `json:"group_dn"`
	// Username is the user's, in the directory's spelling.
	Username string `json:"username"`
}

// Notice is something a sync run left as it was, and why: a store group
// (DN), a directory entry it could not use (DN), a removal the directory did
// not prove (Username, with Group for a membership; or Field, a mapped field
// no entry carried), or a removal held back (Username, DN of a group, or
// Username and Group).
type Notice struct {
	DN       string `json:"dn,omitempty"`
	Username string `json:"username,omitempty"`
	Group    string `json:"group_dn,omitempty"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
}

// RemovalCount is one kind of removal the removal guard weighs: how many a
// run removes, of how many the store holds.
type RemovalCount struct {
	Remove int `json:"remove"`
	Total  int `json:"total"`
	// OverLimit is set when Remove is above both the guard's share of
	// Total and its allowance (and, for users, when the directory
	// returned no user at all): the run is refused unless forced.
	OverLimit bool `json:"over_limit"`
}

// String returns "remove of total", with "over the limit" when it is.
func (c RemovalCount) String() string {
	s := fmt.Sprintf("%d of %d", c.Remove, c.Total)
	if c.OverLimit {
		s += " (over the limit)"
	}
	return s
}

// RemovalGuard is what the removal guard weighed in a run: each kind of
// removal against its own total in the store, each with the same share
// (LDAP_SYNC_MAX_REMOVAL_PERCENT) and allowance ([syncRemovalAllowance]).
type RemovalGuard struct {
	// LimitPercent is Config.SyncMaxRemovalPercent.
	LimitPercent int `json:"limit_percent"`
	// Allowance is syncRemovalAllowance.
	Allowance int `json:"allowance"`
	// Users: directory-managed users removed, of those the store holds.
	Users RemovalCount `json:"users"`
	// Groups: synced groups removed, of the synced groups the store holds.
	Groups RemovalCount `json:"groups"`
	// Memberships: memberships removed from synced groups (not counting
	// those that go with a removed user or group), of the memberships the
	// store holds in synced groups.
	Memberships RemovalCount `json:"memberships"`
	// Held are the removals the run planned but did not make: the read
	// returned entries without the username attribute that match no stored
	// user by DN, so any stored user the read missed may be one of them.
	// The next complete read makes them, or [SyncOptions.Force] does.
	Held []Notice `json:"held"`
}

// overLimit reports whether the guard refuses any kind.
func (g RemovalGuard) overLimit() bool {
	return g.Users.OverLimit || g.Groups.OverLimit || g.Memberships.OverLimit
}

// SyncCounts are the lengths of a [SyncReport]'s lists, each field the
// length of the list of the same name.
type SyncCounts struct {
	// UsersRemoved is len(SyncReport.UsersRemoved).
	UsersRemoved int `json:"users_removed"`
	// UsersUpdated is len(SyncReport.UsersUpdated).
	UsersUpdated int `json:"users_updated"`
	// UsersCreated is len(SyncReport.UsersCreated).
	UsersCreated int `json:"users_created"`
	// OrganisationJoins is len(SyncReport.OrganisationJoins).
	OrganisationJoins int `json:"organisation_joins"`
	// GroupsCreated is len(SyncReport.GroupsCreated).
	GroupsCreated int `json:"groups_created"`
	// GroupsRemoved is len(SyncReport.GroupsRemoved).
	GroupsRemoved int `json:"groups_removed"`
	// GroupsLeftAlone is len(SyncReport.GroupsLeftAlone).
	GroupsLeftAlone int `json:"groups_left_alone"`
	// MembershipsAdded is len(SyncReport.MembershipsAdded).
	MembershipsAdded int `json:"memberships_added"`
	// MembershipsRemoved is len(SyncReport.MembershipsRemoved).
	MembershipsRemoved int `json:"memberships_removed"`
	// Skipped is len(SyncReport.Skipped).
	Skipped int `json:"skipped"`
	// Unconfirmed is len(SyncReport.Unconfirmed).
	Unconfirmed int `json:"unconfirmed"`
	// Held is len(SyncReport.RemovalGuard.Held).
	Held int `json:"held"`
}

// Changes is the number of store writes the counts stand for.
func (c SyncCounts) Changes() int {
	return c.UsersRemoved + c.UsersUpdated + c.UsersCreated + c.OrganisationJoins + c.GroupsCreated +
		c.GroupsRemoved + c.MembershipsAdded + c.MembershipsRemoved
}

// SyncReport lists every change of a sync run: made, or planned when the
// run was a dry run or was refused. Lists are sorted; usernames are the
// directory's spelling (the store's for removed users). Print it with
// String or WriteText; encode it with encoding/json.
type SyncReport struct {
	// DryRun is set when nothing was meant to be written.
	DryRun bool `json:"dry_run"`
	// Forced is set when the run was forced past the removal guard.
	Forced bool `json:"forced"`
	// Applied is set when every change listed was written.
	Applied bool `json:"applied"`

	// Pages and DirectoryUsers say what was read: pages of the user search
	// and user entries with a username. StoreUsers is the number of
	// directory-managed users the store held before the run.
	Pages          int `json:"pages"`
	DirectoryUsers int `json:"directory_users"`
	StoreUsers     int `json:"store_users"`

	// UsersRemoved are directory-managed users the directory no longer
	// returns (the login search would not find them).
	UsersRemoved []string `json:"users_removed"`
	// UsersUpdated are users whose mapped fields or DN changed.
	UsersUpdated []string `json:"users_updated"`
	// UsersCreated are directory users new to the store (CreateUsers).
	UsersCreated []string `json:"users_created"`
	// OrganisationJoins are users joined to Config.OrganisationID.
	OrganisationJoins []string `json:"organisation_joins"`
	// GroupsCreated are synced groups created because a user is a member.
	GroupsCreated []Group `json:"groups_created"`
	// GroupsRemoved are synced groups the directory proves gone (see
	// [Authenticator.Sync]), removed with their memberships.
	GroupsRemoved []Group `json:"groups_removed"`
	// GroupsLeftAlone are store groups the sync did not touch: not in
	// LDAP_SYNCED_GROUPS, not confirmed gone, or whose entry came without
	// member values (their memberships read from it are kept).
	GroupsLeftAlone []Notice `json:"groups_left_alone"`
	// MembershipsAdded and MembershipsRemoved are changes of the synced
	// groups' members (those of removed users and groups not included).
	MembershipsAdded   []Membership `json:"memberships_added"`
	MembershipsRemoved []Membership `json:"memberships_removed"`
	// Skipped are directory entries the sync could not use.
	Skipped []Notice `json:"skipped"`
	// Unconfirmed are removals of users and memberships the read implied
	// but the directory did not prove: kept (see docs/sync.md, fail closed).
	Unconfirmed []Notice `json:"unconfirmed"`

	// RemovalGuard is what the removal guard weighed.
	RemovalGuard RemovalGuard `json:"removal_guard"`
	// Counts are the lengths of the lists above.
	Counts SyncCounts `json:"counts"`
	// ChangeSync is set by [Authenticator.SyncChanges]: how the directory
	// was read, and why not incrementally when it was not.
	ChangeSync *ChangeSync `json:"change_sync,omitempty"`
}

// String returns the report as WriteText writes it.
func (r *SyncReport) String() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// WriteText writes the report for people: a summary line, then one line per
// change.
func (r *SyncReport) WriteText(w io.Writer) error {
	var b strings.Builder
	r.writeSummary(&b)
	membership := func(m Membership) string { return m.Username + " in " + m.GroupDN }
	groupDN := func(g Group) string { return g.DN }
	if cs := r.ChangeSync; cs != nil {
		cs.writeText(&b)
	}
	writeList(&b, "users removed", r.UsersRemoved)
	writeList(&b, "users updated", r.UsersUpdated)
	writeList(&b, "users created", r.UsersCreated)
	writeList(&b, "organisation joins", r.OrganisationJoins)
	writeList(&b, "groups created", lines(r.GroupsCreated, groupDN))
	writeList(&b, "groups removed", lines(r.GroupsRemoved, groupDN))
	writeList(&b, "memberships added", lines(r.MembershipsAdded, membership))
	writeList(&b, "memberships removed", lines(r.MembershipsRemoved, membership))
	dnReason := func(n Notice) string { return n.DN + ": " + n.Reason }
	writeList(&b, "groups left alone", lines(r.GroupsLeftAlone, dnReason))
	writeList(&b, "entries skipped", lines(r.Skipped, dnReason))
	writeList(&b, "removals not confirmed, kept", lines(r.Unconfirmed, func(n Notice) string { return n.what() + ": " + n.Reason }))
	if held := r.RemovalGuard.Held; len(held) > 0 {
		fmt.Fprintf(&b, "removals held back (%d): %s\n", len(held), held[0].Reason)
		for _, n := range held {
			fmt.Fprintf(&b, "  %s\n", n.what())
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSummary writes the report's first two lines: the mode and the
// counts, then the removal guard.
func (r *SyncReport) writeSummary(b *strings.Builder) {
	mode := "applied"
	switch {
	case r.DryRun:
		mode = "dry run, nothing written"
	case !r.Applied:
		mode = "not applied"
	}
	forced := ""
	if r.Forced {
		forced = ", forced"
	}
	fmt.Fprintf(b, "ldapauth sync (%s%s): %d directory users in %d pages, %d directory-managed users in the store, %d changes\n",
		mode, forced, r.DirectoryUsers, r.Pages, r.StoreUsers, r.Counts.Changes())
	g := r.RemovalGuard
	fmt.Fprintf(b, "removal guard (%d%% of each, or %d): users %s, synced groups %s, memberships %s\n",
		g.LimitPercent, g.Allowance, g.Users, g.Groups, g.Memberships)
}

// heldRemovals lists the removals of rep, held back for reason.
func heldRemovals(reason string, rep *SyncReport) []Notice {
	var held []Notice
	for _, u := range rep.UsersRemoved {
		held = append(held, Notice{Username: u, Reason: reason})
	}
	for _, g := range rep.GroupsRemoved {
		held = append(held, Notice{DN: g.DN, Reason: reason})
	}
	for _, m := range rep.MembershipsRemoved {
		held = append(held, Notice{Username: m.Username, Group: m.GroupDN, Reason: reason})
	}
	return held
}

// what names what a removal notice is about.
func (n Notice) what() string {
	switch {
	case n.Field != "":
		return "field " + n.Field
	case n.Group != "":
		return "membership " + n.Username + " in " + n.Group
	case n.Username != "":
		return "user " + n.Username
	}
	return "group " + n.DN
}

// writeList writes a titled list, nothing when it is empty.
func writeList(b *strings.Builder, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(b, "%s (%d):\n", title, len(items))
	for _, it := range items {
		fmt.Fprintf(b, "  %s\n", it)
	}
}

// lines is each item as a line of the text report.
func lines[T any](items []T, line func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = line(it)
	}
	return out
}

func (r *SyncReport) count() {
	r.Counts = SyncCounts{
		UsersRemoved: len(r.UsersRemoved), UsersUpdated: len(r.UsersUpdated), UsersCreated: len(r.UsersCreated),
		OrganisationJoins: len(r.OrganisationJoins), GroupsCreated: len(r.GroupsCreated), GroupsRemoved: len(r.GroupsRemoved),
		GroupsLeftAlone: len(r.GroupsLeftAlone), MembershipsAdded: len(r.MembershipsAdded),
		MembershipsRemoved: len(r.MembershipsRemoved), Skipped: len(r.Skipped), Unconfirmed: len(r.Unconfirmed),
		Held: len(r.RemovalGuard.Held),
	}
}

// MarshalJSON encodes the report with empty lists as [], never null, so that
// consumers of the JSON need no nil checks.
func (r SyncReport) MarshalJSON() ([]byte, error) {
	type plain SyncReport // without this method
	p := plain(r)
	p.UsersRemoved = orEmpty(p.UsersRemoved)
	p.UsersUpdated = orEmpty(p.UsersUpdated)
	p.UsersCreated = orEmpty(p.UsersCreated)
	p.OrganisationJoins = orEmpty(p.OrganisationJoins)
	p.GroupsCreated = orEmpty(p.GroupsCreated)
	p.GroupsRemoved = orEmpty(p.GroupsRemoved)
	p.GroupsLeftAlone = orEmpty(p.GroupsLeftAlone)
	p.MembershipsAdded = orEmpty(p.MembershipsAdded)
	p.MembershipsRemoved = orEmpty(p.MembershipsRemoved)
	p.Skipped = orEmpty(p.Skipped)
	p.Unconfirmed = orEmpty(p.Unconfirmed)
	p.RemovalGuard.Held = orEmpty(p.RemovalGuard.Held)
	return json.Marshal(p)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// The stages of a sync run, in order.
const (
	syncReadStore  = "read store"
	syncBind       = "bind"
	syncReadUsers  = "read users"
	syncReadGroups = "read groups"
	syncApply      = "apply"
	syncDone       = "done"
)
