package ldapauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// The sync's proofs of absence for users and memberships. A read the sync
// account's access rules can shape (an entry hidden, a memberOf value
// hidden, an attribute hidden) must never remove data: a user or a
// membership the read misses is removed only when the directory proves it
// gone by an answer an access rule cannot fake; otherwise it is kept and
// listed in SyncReport.Unconfirmed. Each proof costs one or two reads, and
// is asked only for what a run is about to remove.

// compare runs an LDAP Compare on c: true for compareTrue, false for
// compareFalse, an error for any other answer.
func (c *conn) compare(ctx context.Context, dn, attr, value string) (bool, error) {
	ctx, op := c.obs.op(ctx, opSearch, c.server)
	var ok bool
	err := c.do(ctx, func() error {
		var err error
		ok, err = c.l.Compare(dn, attr, value)
		return err
	})
	op.done(err)
	return ok, err
}

// memberProof asks group entries, by Compare as the sync account, whether
// they list a user. absent remembers the member attributes a group entry
// does not have (noSuchAttribute), so each is asked once per group.
type memberProof struct {
	c      comparer
	absent map[string]bool // DNKey(group) + "\x00" + attribute
	// answers remembers, by DNKey(group), whether the server answers a
	// Compare of the group's entry at all (answersCompare).
	answers map[string]bool
}

// answersCompare reports whether the server answers a Compare of the group
// entry groupDN as the sync account: objectClass, which the account reads
// to find any entry, against "top" must answer compareTrue or
// compareFalse. A server that answers otherwise (GLAuth refuses every
// Compare with insufficientAccess) cannot tell a hidden value from a
// missing one this way, so there the read's judgment stands, as it did
// before Compare was asked. One Compare per group.
func (p *memberProof) answersCompare(ctx context.Context, groupDN string) (bool, error) {
	key := DNKey(groupDN)
	if ok, asked := p.answers[key]; asked {
		return ok, nil
	}
	_, err := p.c.compare(ctx, groupDN, "objectClass", "top")
	switch {
	case err == nil:
		p.answers[key] = true
	case ctx.Err() != nil:
		return false, ctxError(ctx)
	case isNetworkError(err):
		return false, wrap(classifyNetwork(err), "compare objectClass of %s", groupDN)
	default:
		p.answers[key] = false
	}
	return p.answers[key], nil
}

// notListed returns "" when the group entry groupDN proves, by Compare, that
// it does not list the user, or when the server does not answer Compare
// (answersCompare) (userDN in member or uniqueMember, username in
// memberUid): at least one compareFalse, every other attribute absent.
// Otherwise it says why that is not proven: the entry lists the user, or an
// answer was neither (slapd answers insufficientAccess, 50, for a value an
// access rule hides, where a visible non-member gets compareFalse). Errors
// are those of the connection or ctx.
func (p *memberProof) notListed(ctx context.Context, groupDN, userDN, username string) (string, error) {
	if ok, err := p.answersCompare(ctx, groupDN); err != nil || !ok {
		return "", err
	}
	falseSeen := false
	for _, attr := range memberAttrs {
		key := DNKey(groupDN) + "\x00" + strings.ToLower(attr)
		if p.absent[key] {
			continue
		}
		value := userDN
		if attr == "memberUid" {
			value = username
		}
		listed, err := p.c.compare(ctx, groupDN, attr, value)
		switch {
		case err == nil && listed:
			return fmt.Sprintf("the group's entry lists the user in %s", attr), nil
		case err == nil:
			falseSeen = true
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) || ldap.IsErrorWithCode(err, ldap.LDAPResultUndefinedAttributeType):
			p.absent[key] = true
		case ctx.Err() != nil:
			return "", ctxError(ctx)
		case isNetworkError(err):
			return "", wrap(classifyNetwork(err), "compare %s of %s", attr, groupDN)
		default:
			return fmt.Sprintf("comparing %s of the group's entry with the user answered %s (an access rule may hide the value)", attr, resultName(err)), nil
		}
	}
	if !falseSeen {
		return noMemberAttrs, nil
	}
	return "", nil
}

// comparer is a Directory that can Compare: the library's connections
// (the sync's, a login's).
type comparer interface {
	compare(ctx context.Context, dn, attr, value string) (bool, error)
}

// noMemberAttrs is notListed's reason when the group's entry has none of
// the member attributes: slapd answers noSuchAttribute only once the
// access rules allow the Compare, so the group is empty.
const noMemberAttrs = "the group's entry has no member, uniqueMember or memberUid the sync account may compare"

// emptyConfirmed runs at a login (and a login-like check of the sync) for a
// group entry read without any member value: an access rule hiding member
// from the reader gives that too. It reports whether Compare confirms that
// the entry does not list the user (compareFalse, or no member attribute
// at all, which an emptied posixGroup gives); any other answer leaves the
// membership unknown, so it is kept. A Directory that cannot Compare (a
// caller's own) reads the entry as an empty group, as before. Cost: up to
// four Compares, only for such an entry.
func (m *memberCheck) emptyConfirmed(ctx context.Context, g groupRef) (bool, error) {
	c, ok := m.dir.(comparer)
	if !ok {
		return true, nil
	}
	why, err := newMemberProof(c).notListed(ctx, g.dn, m.u.DN, m.u.Username)
	return why == "" || why == noMemberAttrs, err
}

// newMemberProof is a memberProof on c.
func newMemberProof(c comparer) *memberProof {
	return &memberProof{c: c, absent: map[string]bool{}, answers: map[string]bool{}}
}

// keep records a removal the directory did not prove: the user (groupDN
// empty) or its membership of groupDN stays, listed with why.
func (r *syncRun) keep(username, groupDN, why string) {
	r.report.Unconfirmed = append(r.report.Unconfirmed, Notice{Username: username, Group: groupDN, Reason: why})
}

// confirmAbsent proves, before they are planned, the removals of users and
// memberships the read implies; what it cannot prove is kept (keep).
func (r *syncRun) confirmAbsent(ctx context.Context, c *conn) error {
	if err := r.confirmUsersGone(ctx, c); err != nil {
		return r.abort(syncReadUsers, err)
	}
	if err := r.confirmMembershipRemovals(ctx, c); err != nil {
		return r.abort(syncReadGroups, err)
	}
	if err := r.keepUnreadFields(ctx); err != nil {
		return r.abort(syncReadStore, err)
	}
	slices.SortFunc(r.report.Unconfirmed, func(a, b Notice) int {
		return cmp.Or(strings.Compare(a.Field, b.Field), strings.Compare(a.Group, b.Group), strings.Compare(a.Username, b.Username))
	})
	return nil
}

// refused reports whether the removal guard refuses remove of total
// whatever the proofs say, so that they need not be asked: a run about to
// be refused (a wrong filter reads nobody) costs no read per stored user.
func (r *syncRun) refused(remove, total int) bool {
	if r.opts.Force {
		return false
	}
	limit := r.a.cfg.SyncMaxRemovalPercent
	return remove > syncRemovalAllowance && remove*100 > limit*total
}

// confirmUsersGone gives each stored user the read did not return, whose
// DN the store knows, a read of that DN as the sync account: an entry
// returned is readable, so the user was filtered out (left the login
// group, changed object class, moved) and its removal stands; noSuchObject
// stands only with proveGone's proof (a readable parent that has no such
// child). An answer without a matched DN (or success without the entry)
// keeps the user where the server names matched DNs for missing entries
// (namesMatchedDN), and stands where it does not. Anything else keeps the
// user. A stored user without a DN is removed as before: there is nothing
// to ask. Cost: one read per user about to be removed, three more for one
// answered noSuchObject with a matched DN, one per parent otherwise.
func (r *syncRun) confirmUsersGone(ctx context.Context, c *conn) error {
	missing := r.usersMissing()
	if missing == 0 || r.refused(missing, r.report.StoreUsers) || (r.dirUsers == 0 && !r.opts.Force) {
		return nil
	}
	if err := r.loadMissing(ctx); err != nil {
		return err
	}
	parents := map[string]bool{}
	for _, m := range r.missing() {
		if m.present || m.DN == "" {
			continue
		}
		why, err := notConfirmedGone(ctx, c, m.DN, parents)
		if err != nil {
			return err
		}
		if why == "" {
			continue
		}
		m.present = true
		r.keep(m.Username, "", why+"; kept")
	}
	return nil
}

// usersMissing counts the stored users the read did not return.
func (r *syncRun) usersMissing() int {
	missing := 0
	for su := range r.users.all() {
		if !su.present {
			missing++
		}
	}
	return missing
}

// notConfirmedGone reads a missing user's entry dn as the sync account and
// returns why its removal does not stand, or "" when it does.
func notConfirmedGone(ctx context.Context, c *conn, dn string, parents map[string]bool) (string, error) {
	res, err := c.Search(ctx, baseSearch(dn))
	var lerr *ldap.Error
	hidden := err == nil && len(res.Entries) == 0 ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) && errors.As(err, &lerr) && lerr.MatchedDN == ""
	switch {
	case err == nil && len(res.Entries) > 0:
		return "", nil // readable: filtered out, removed
	case hidden:
		return hiddenNotGone(ctx, c, dn, parents)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return missingNotGone(ctx, c, dn)
	case ctx.Err() != nil:
		return "", ctxError(ctx)
	case isNetworkError(err):
		return "", wrap(classifyNetwork(err), "read %s", dn)
	default:
		return fmt.Sprintf("reading its entry %s answered %s", dn, resultName(err)), nil
	}
}

// hiddenNotGone judges a hidden entry's answer, or a missing one's on a
// server that names no matched DN: only the first keeps the user.
func hiddenNotGone(ctx context.Context, c *conn, dn string, parents map[string]bool) (string, error) {
	names, err := namesMatchedDN(ctx, c, dn, parents)
	if err != nil || !names {
		return "", err
	}
	return "not confirmed gone: the sync account is not shown its entry " + dn + ", while this server names the matched DN for an entry really missing there (an access rule may hide it)", nil
}

// missingNotGone judges noSuchObject with a matched DN: the user is gone
// only with proveGone's proof.
func missingNotGone(ctx context.Context, c *conn, dn string) (string, error) {
	why, err := proveGone(ctx, c, dn)
	if err != nil || why == "" {
		return "", err // proven gone, or the proof failed
	}
	return "not confirmed gone: reading " + dn + " answered noSuchObject, which is also the answer for an entry an access rule hides, and " + why, nil
}

// confirmMembershipRemovals proves each planned membership removal by a
// Compare of the group's entry (notListed): a memberOf value or a member
// value an access rule hides reads like a membership that ended. A removal
// not proven is kept. Cost: one Compare per planned removal (up to three
// for the first of each group, whose absent member attributes are then
// known).
func (r *syncRun) confirmMembershipRemovals(ctx context.Context, c *conn) error {
	total := r.membershipTotal()
	if len(r.report.MembershipsRemoved) == 0 || r.refused(len(r.report.MembershipsRemoved), total) {
		return nil
	}
	proof := newMemberProof(c)
	var err error
	r.report.MembershipsRemoved = slices.DeleteFunc(r.report.MembershipsRemoved, func(m Membership) bool {
		if err != nil {
			return false
		}
		i, ok := r.groupIdx[DNKey(m.GroupDN)]
		if ok && r.groups[i].gone || r.ambiguous[normUser(m.Username)] {
			return false // removed with the group, or dropped by plan
		}
		dn := r.memberDNs[r.userKey(m.Username)]
		why := "the user's entry DN is not known"
		if dn != "" {
			why, err = proof.notListed(ctx, m.GroupDN, dn, m.Username)
			if err != nil || why == "" {
				return false
			}
		}
		r.keep(m.Username, m.GroupDN, "membership removal not confirmed: "+why+"; kept")
		return true
	})
	return err
}

// loginGroupUnconfirmed runs, with the login-group filter, for a stored
// user whose entry the search without the group term found but no login
// rule admitted: the memberOf the filter reads may be hidden from the sync
// account, so the login group's entry is asked (notListed). It returns ""
// when the entry proves the user is not in the login group (the removal
// stands), else why the user is kept. Cost: one Compare (up to three the
// first time).
func (r *syncRun) loginGroupUnconfirmed(ctx context.Context, proof *memberProof, entry *ldap.Entry, username string) (string, error) {
	why, err := proof.notListed(ctx, r.a.loginGroup.dn, entry.DN, username)
	if err != nil || why == "" {
		return why, err
	}
	return fmt.Sprintf("not confirmed outside the login group %s: the search without the group term finds its entry, and %s; kept", r.a.loginGroup.dn, why), nil
}

// resultName names an LDAP result for a report: "50 Insufficient Access
// Rights", or the error's text when it is not an LDAP result.
func resultName(err error) string {
	var lerr *ldap.Error
	if errors.As(err, &lerr) {
		if name, ok := ldap.LDAPResultCodeMap[lerr.ResultCode]; ok {
			return fmt.Sprintf("%d %s", lerr.ResultCode, name)
		}
	}
	return unprefixed(err)
}

// sawFields records the mapped fields the entry carries.
func (r *syncRun) sawFields(e *ldap.Entry) {
	if r.fieldsSeen == nil {
		r.fieldsSeen = make(map[string]bool, len(r.a.cfg.UserFields))
	} else if len(r.fieldsSeen) == len(r.a.cfg.UserFields) {
		return
	}
	for field, attr := range r.a.cfg.UserFields {
		if !r.fieldsSeen[field] && e.GetEqualFoldAttributeValue(attr) != "" {
			r.fieldsSeen[field] = true
		}
	}
}

// keepUnreadFields keeps the stored values of a mapped field that no entry
// of the read carried: an access rule hiding the attribute from the sync
// account (mail, say) would otherwise clear it for every user. A field
// absent from some entries only is a directory change and clears as
// before. An update left with nothing to change is dropped. No read.
func (r *syncRun) keepUnreadFields(ctx context.Context) error {
	var unread []string
	for field := range r.a.cfg.UserFields {
		if !r.fieldsSeen[field] {
			unread = append(unread, field)
		}
	}
	if len(unread) == 0 || r.dirUsers == 0 || len(r.saves) == 0 {
		return nil
	}
	updated := make(map[uint64]bool, len(r.saves))
	for _, u := range r.saves {
		updated[r.userKey(u.Username)] = true
	}
	stored, err := r.storedDetails(ctx, func(su *storeUser) bool { return updated[su.key] })
	if err != nil {
		return err
	}
	slices.Sort(unread)
	kept := map[string]int{}
	dropped := map[string]bool{}
	r.saves = slices.DeleteFunc(r.saves, func(u *User) bool {
		d, ok := stored[r.userKey(u.Username)]
		if !ok || d.Fields == nil {
			return false // created, or nothing stored to keep
		}
		for _, f := range unread {
			if v, ok := d.Fields[f]; ok {
				u.Fields[f] = v
				kept[f]++
			}
		}
		same := d.Username == u.Username && d.DN == u.DN && maps.Equal(u.Fields, d.Fields)
		dropped[u.Username] = same
		return same
	})
	r.report.UsersUpdated = slices.DeleteFunc(r.report.UsersUpdated, func(name string) bool { return dropped[name] })
	for _, f := range unread {
		if kept[f] > 0 {
			r.report.Unconfirmed = append(r.report.Unconfirmed, Notice{Field: f, Reason: fmt.Sprintf(
				"no entry of the read carried %s while the store holds it for %d users read (an access rule may hide it from the sync account): their stored values are kept",
				r.a.cfg.UserFields[f], kept[f])})
		}
	}
	return nil
}

// baseSearch is a base search of dn for no attribute.
func baseSearch(dn string) *ldap.SearchRequest {
	return ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{"1.1"}, nil)
}

// namesMatchedDN reports whether the server, asked as the sync account for
// an entry that does not exist beside dn (a probe RDN under dn's parent),
// answers noSuchObject naming a matched DN. OpenLDAP does, and names none
// for an entry an access rule hides, so there an answer without one means
// hidden. GLAuth (success, no entry) and Samba (no matched DN) answer a
// missing entry exactly as a hidden one: there the read's judgment stands.
// parents caches the answer by parent; one search per parent asked.
func namesMatchedDN(ctx context.Context, c *conn, dn string, parents map[string]bool) (bool, error) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) < 2 {
		return true, nil // nothing to compare with: keep
	}
	parent := (&ldap.DN{RDNs: parsed.RDNs[1:]}).String()
	key := DNKey(parent)
	if names, asked := parents[key]; asked {
		return names, nil
	}
	_, err = c.Search(ctx, baseSearch("cn=ldapauth-absence-probe,"+parent))
	var lerr *ldap.Error
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return false, ctxError(ctx)
	case isNetworkError(err):
		return false, wrap(classifyNetwork(err), "read %s", parent)
	case errors.As(err, &lerr) && lerr.ResultCode == ldap.LDAPResultNoSuchObject && lerr.MatchedDN != "":
		parents[key] = true
	}
	return parents[key], nil
}
