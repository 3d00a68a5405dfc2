package ldapauth

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// SyncProgress says how far a sync run has come.
type SyncProgress struct {
	Phase  string `json:"phase"`  // "read store", "bind", "read users", "read groups", "apply", "done"
	Pages  int    `json:"pages"`  // pages of users read so far
	Users  int    `json:"users"`  // user entries read so far
	Groups int    `json:"groups"` // group entries read so far
	Done   int    `json:"done"`   // store writes of the apply phase made,
	Total  int    `json:"total"`  // of this many
}

// Membership is one user (the directory's spelling) in one synced group.
type Membership struct {
	GroupDN  string `json:"group_dn"`
	Username string `json:"username"`
}

// Notice is something a sync left as it was, and why: a group or entry
// (DN), a user or membership (Username, Group), or a mapped Field.
type Notice struct {
	DN       string `json:"dn,omitempty"`
	Username string `json:"username,omitempty"`
	Group    string `json:"group_dn,omitempty"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
}

// RemovalCount is one kind of removal the removal guard weighs: Remove of
// Total, OverLimit when the guard refuses it.
type RemovalCount struct {
	Remove    int  `json:"remove"`
	Total     int  `json:"total"`
	OverLimit bool `json:"over_limit"`
}

func (c RemovalCount) String() string {
	s := fmt.Sprintf("%d of %d", c.Remove, c.Total)
	if c.OverLimit {
		s += " (over the limit)"
	}
	return s
}

// RemovalGuard is what the removal guard weighed, and the removals held
// back (docs/sync.md).
type RemovalGuard struct {
	LimitPercent int          `json:"limit_percent"`
	Allowance    int          `json:"allowance"`
	Users        RemovalCount `json:"users"`
	Groups       RemovalCount `json:"groups"`
	Memberships  RemovalCount `json:"memberships"`
	Held         []Notice     `json:"held"`
}

// overLimit reports whether the guard refuses any kind.
func (g RemovalGuard) overLimit() bool {
	return g.Users.OverLimit || g.Groups.OverLimit || g.Memberships.OverLimit
}

// syncCounts are the lengths of a [SyncReport]'s lists of the same names
// (Held: RemovalGuard.Held), the report's "counts" in JSON.
type syncCounts struct {
	UsersRemoved       int `json:"users_removed"`
	UsersUpdated       int `json:"users_updated"`
	UsersCreated       int `json:"users_created"`
	OrganisationJoins  int `json:"organisation_joins"`
	GroupsCreated      int `json:"groups_created"`
	GroupsRemoved      int `json:"groups_removed"`
	GroupsLeftAlone    int `json:"groups_left_alone"`
	MembershipsAdded   int `json:"memberships_added"`
	MembershipsRemoved int `json:"memberships_removed"`
	Skipped            int `json:"skipped"`
	Unconfirmed        int `json:"unconfirmed"`
	Held               int `json:"held"`
}

// Changes is the number of store writes the report lists.
func (r *SyncReport) Changes() int {
	return len(r.UsersRemoved) + len(r.UsersUpdated) + len(r.UsersCreated) + len(r.OrganisationJoins) +
		len(r.GroupsCreated) + len(r.GroupsRemoved) + len(r.MembershipsAdded) + len(r.MembershipsRemoved)
}

// SyncReport lists every change of a sync run, made or planned, sorted
// (docs/sync.md). Print it with String or WriteText, or encode it as JSON.
type SyncReport struct {
	DryRun         bool `json:"dry_run"`
	Forced         bool `json:"forced"`
	Applied        bool `json:"applied"` // every change listed was written
	Pages          int  `json:"pages"`
	DirectoryUsers int  `json:"directory_users"`
	StoreUsers     int  `json:"store_users"`

	UsersRemoved       []string     `json:"users_removed"`
	UsersUpdated       []string     `json:"users_updated"`
	UsersCreated       []string     `json:"users_created"`
	OrganisationJoins  []string     `json:"organisation_joins"`
	GroupsCreated      []Group      `json:"groups_created"`
	GroupsRemoved      []Group      `json:"groups_removed"`
	GroupsLeftAlone    []Notice     `json:"groups_left_alone"`
	MembershipsAdded   []Membership `json:"memberships_added"`
	MembershipsRemoved []Membership `json:"memberships_removed"`
	Skipped            []Notice     `json:"skipped"`     // entries the sync could not use
	Unconfirmed        []Notice     `json:"unconfirmed"` // removals not proven, kept

	RemovalGuard RemovalGuard `json:"removal_guard"`
	ChangeSync   *ChangeSync  `json:"change_sync,omitempty"` // set by SyncChanges
}

func (r *SyncReport) String() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// WriteText writes the report for people, one line per change.
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
		mode, forced, r.DirectoryUsers, r.Pages, r.StoreUsers, r.Changes())
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

// counts returns the lengths of the report's lists.
func (r *SyncReport) counts() syncCounts {
	return syncCounts{
		UsersRemoved: len(r.UsersRemoved), UsersUpdated: len(r.UsersUpdated), UsersCreated: len(r.UsersCreated),
		OrganisationJoins: len(r.OrganisationJoins), GroupsCreated: len(r.GroupsCreated), GroupsRemoved: len(r.GroupsRemoved),
		GroupsLeftAlone: len(r.GroupsLeftAlone), MembershipsAdded: len(r.MembershipsAdded),
		MembershipsRemoved: len(r.MembershipsRemoved), Skipped: len(r.Skipped), Unconfirmed: len(r.Unconfirmed),
		Held: len(r.RemovalGuard.Held),
	}
}

// MarshalJSON encodes the report with empty lists as [], never null.
func (r SyncReport) MarshalJSON() ([]byte, error) {
	type plain SyncReport // without this method
	p := plain(r)
	counts := r.counts()
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
	return json.Marshal(struct {
		plain
		Counts syncCounts `json:"counts"`
	}{p, counts})
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
