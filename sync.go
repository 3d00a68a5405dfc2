package ldapauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// SyncOptions changes what one [Authenticator.Sync] run does.
type SyncOptions struct {
	DryRun      bool               // plan every change, write nothing
	Force       bool               // past the removal guard, and the removals held back
	CreateUsers bool               // also create the directory's users that never logged in
	Progress    func(SyncProgress) // called after each page, group and few hundred writes; must be quick
}

// Sync is Flagsmith's sync_ldap_users_and_groups: it reads every user the
// login search accepts and brings the store in step. Creates and updates
// are written page by page as they are read; memberships and removals only
// once the whole read is confirmed and the removal guard agreed, so a
// failed run removes nothing (docs/sync.md).
func (a *Authenticator) Sync(ctx context.Context, opts SyncOptions) (report *SyncReport, err error) {
	ctx, obs := a.obs.syncStart(ctx, opts)
	defer obs.end(&report, &err)
	return a.runSync(ctx, opts)
}

// runSync is Sync, unmeasured: SyncChanges measures its own runs, the
// full sync it falls back to included.
func (a *Authenticator) runSync(ctx context.Context, opts SyncOptions) (*SyncReport, error) {
	if err := a.cfg.ValidateSync(); err != nil {
		return nil, err
	}
	if a.cfg.Store == nil {
		return nil, configErr("the sync writes into Config.Store, which is nil", envSyncRelations)
	}
	r := a.newSyncRun(opts)
	r.stream = !opts.DryRun
	// The store is read while the directory is dialled, bound and asked
	// for its first page; the entries wait for it (awaitStore).
	cancelLoad := r.startLoad(ctx)
	defer cancelLoad()
	if err := r.read(ctx); err != nil {
		cancelLoad()
		if lerr := r.awaitStore(); lerr != nil && !errors.Is(lerr, context.Canceled) {
			return nil, lerr
		}
		return nil, err
	}
	r.seen = keySet{} // read: a first sync's largest set, not needed to apply
	if err := r.loadMissing(ctx); err != nil {
		return nil, r.abort(syncReadStore, err)
	}
	r.plan()
	rep := r.report
	log := a.cfg.Logger
	if err := r.guard(); err != nil {
		return rep, err // the caller logs it, or not
	}
	if opts.DryRun {
		r.progress(syncDone)
		log.LogAttrs(ctx, slog.LevelInfo, "ldapauth: sync dry run planned", slog.Int("changes", rep.Changes()))
		return rep, nil
	}
	if err := r.apply(ctx); err != nil {
		return rep, err
	}
	rep.Applied = true
	if err := r.relate(ctx); err != nil {
		return rep, err
	}
	r.progress(syncDone)
	log.LogAttrs(ctx, slog.LevelInfo, "ldapauth: sync applied",
		slog.Int("pages", rep.Pages), slog.Int("users", rep.DirectoryUsers), slog.Int("changes", rep.Changes()),
		slog.Int("users_removed", len(rep.UsersRemoved)), slog.Int("groups_removed", len(rep.GroupsRemoved)),
		slog.Int("memberships_added", len(rep.MembershipsAdded)), slog.Int("memberships_removed", len(rep.MembershipsRemoved)))
	return rep, nil
}

// ValidateSync reports the sync job's unset settings, one [*ConfigError]
// per variable, joined; Sync calls it (docs/sync.md).
func (c *Config) ValidateSync() error {
	var errs []error
	missing := func(variable, why string) {
		errs = append(errs, configErr("not set: the sync job needs it ("+why+")", variable))
	}
	if c.SyncUsername == "" {
		missing(envSyncUsername, "the account it binds as")
	}
	if c.SyncPassword == "" {
		missing(envSyncPassword, "the sync account's password")
	}
	// A custom syncer keeps relations its own way: the groups and the
	// organisation are then optional.
	groups := c.usesGroupSyncer() || c.usesNoRelations()
	if groups && len(c.SyncedGroups) == 0 {
		missing(envSyncedGroups, "the groups it keeps in step")
	}
	if c.usesNoRelations() {
		missing(envSyncRelations, "set it to flagsmith_ldap.ldap.sync_user_groups")
	}
	if groups && c.OrganisationID == "" {
		missing(envOrganisationID, "the organisation users join")
	}
	return errors.Join(errs...)
}

// syncedGroup is one DN of LDAP_SYNCED_GROUPS during a run.
type syncedGroup struct {
	ref     groupRef
	dn      string              // as configured
	inStore bool                // the store holds it
	group   Group               // the store's group, when inStore
	members map[uint64]struct{} // the store's members, by userKey
	seen    bool                // some user's memberOf lists it
	read    bool                // its entry was read
	state   groupState
	entry   *groupEntry
	// gone: proven gone (proveGone), or, for a group the store does not
	// hold, answered noSuchObject (no membership is added to it).
	gone bool
	// note says why a group the store holds is kept although its read
	// confirmed nothing.
	note string
}

// confirmRemoval is a membership removal to confirm: the user (DN,
// username, memberOf and primaryGroupID only) and the synced group.
type confirmRemoval struct {
	group int
	user  *User
}

// pendingUser is an entry without memberOf, whose memberships wait for the
// group entries.
type pendingUser struct {
	username, dn, primaryGroupID string
}

type syncRun struct {
	a    *Authenticator
	opts SyncOptions

	groups   []*syncedGroup
	groupIdx map[string]int // DNKey -> index in groups
	dnCache  map[string]int // raw memberOf value -> index, -1 for other groups
	users    userTable
	// loading delivers loadStore's result when it runs in the background
	// (startLoad); loadErr keeps it (awaitStore).
	loading <-chan error
	loadErr error
	early   []*ldap.SearchResult // pages read before the store (whenStored)
	// details holds what the run read again of some stored users, by
	// key: those the read did not return (loadMissing), and in lookup
	// mode every user looked up.
	details map[uint64]StoredUser
	// memberDNs holds the entry DNs of the users a membership removal is
	// planned for (its proof reads them), by key.
	memberDNs map[uint64]string
	others    []Group // store groups outside LDAP_SYNCED_GROUPS

	// seen holds the directory usernames the store does not hold (those it
	// holds are marked present), by their key (userKey),
	// not the name: a first sync holds one per user. dirUsers counts both.
	seen     keySet
	dirUsers int
	// ambiguous holds normUser of the usernames the run leaves unchanged:
	// on more than one entry, among the values of a multi-valued username
	// attribute, or a stored user matched by DN to an entry without one.
	ambiguous map[string]bool
	// unnamed holds the DNs of the entries read without the username
	// attribute; hold says why the run holds back its removals, if it does.
	unnamed []string
	hold    string
	pending []pendingUser
	matched []int // scratch: synced groups of the current entry

	saves []*User  // users to create or update, in that order of the report
	joins []string // users to join the organisation, not yet written
	// stream: the creates, updates and joins of each page of users are
	// written once the page is read (flushPage), except deferred: the
	// updates that keepUnreadFields may revise once the whole read is in.
	stream   bool
	deferred []*User
	// unwritten holds normUser of the users whose planned save or join
	// the run dropped as ambiguous (the report does not list them).
	unwritten map[string]bool
	// fieldsSeen holds the mapped fields some entry of the read carried.
	fieldsSeen map[string]bool

	// confirm holds memberships the direct rule would remove but a login
	// might keep (nested groups, an Active Directory primary group): they
	// are checked as a login checks them before being planned.
	confirm []confirmRemoval
	prog    SyncProgress

	// related holds, with a relation syncer other than the built-ins
	// (custom), the users read, for the syncer once the plan is applied.
	custom  bool
	related []*User

	report *SyncReport

	// extraAttrs are read with the users, and onEntry sees each user
	// entry before the run handles it: SyncChanges keeps the ids of the
	// entries of a full read (DirSync's objectGUIDs).
	extraAttrs []string
	onEntry    func(*ldap.Entry)
	// unpaged marks a read that is one search whatever
	// LDAP_SYNC_PAGE_SIZE says (SyncChanges' refresh), for readError's
	// hints.
	unpaged bool
	// lookup is set in an incremental SyncChanges run with a ChangeStore:
	// r.users, and the synced groups' members, then hold only the users
	// the changes name; memberships is the store's number of memberships
	// of synced groups (the removal guard's total), from the state.
	lookup      ChangeStore
	memberships int

	// hash, fieldKeys and fieldNames make fingerprints (syncstore.go).
	hash       maphash.Hash
	fieldKeys  []string
	fieldNames []string
}

func (a *Authenticator) newSyncRun(opts SyncOptions) *syncRun {
	r := &syncRun{
		a: a, opts: opts,
		groupIdx:  map[string]int{},
		dnCache:   map[string]int{},
		details:   map[uint64]StoredUser{},
		memberDNs: map[uint64]string{},
		ambiguous: map[string]bool{},
		report:    &SyncReport{DryRun: opts.DryRun, Forced: opts.Force},
		custom:    !a.cfg.usesGroupSyncer(),
		hash:      newFingerprintHash(),
	}
	for _, ref := range a.synced {
		if _, dup := r.groupIdx[ref.key]; dup {
			continue
		}
		r.groupIdx[ref.key] = len(r.groups)
		r.groups = append(r.groups, &syncedGroup{ref: ref, dn: ref.dn})
	}
	return r
}

func (r *syncRun) progress(phase string) {
	r.prog.Phase = phase
	if r.opts.Progress != nil {
		r.opts.Progress(r.prog)
	}
}

func (r *syncRun) abort(phase string, err error) error {
	return &SyncAbortError{Phase: phase, Err: err}
}

// syncBindName is the name the sync account binds as.
func (a *Authenticator) syncBindName() (string, error) {
	name := a.cfg.SyncUsername
	if strings.Contains(name, "=") {
		if dn, err := ldap.ParseDN(name); err == nil && len(dn.RDNs) > 0 {
			return name, nil
		}
	}
	bindName, err := a.cfg.FormatUsername.FormatUsername(&a.cfg, name)
	if err != nil {
		return "", wrap(err, "username formatter %s for %s", formatterName(a.cfg.FormatUsername), envSyncUsername)
	}
	if !validCredentialText(bindName) {
		return "", fmt.Errorf("%w: the username formatter %s made an empty or malformed bind name from %s", ErrServiceAccount, formatterName(a.cfg.FormatUsername), envSyncUsername)
	}
	return bindName, nil
}

// read is the read phase: bind, read the users, read the group entries
// needed, resolve the memberships of users without memberOf, confirm the
// removals a login might not make. In a streaming run (not a dry run) it
// writes each page's creates and updates as it reads it (flushPage);
// nothing else.
func (r *syncRun) read(ctx context.Context) error {
	c, err := r.bind(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if err := r.readUsers(ctx, c); err != nil {
		return err
	}
	if err := r.readGroups(ctx, c); err != nil {
		return err
	}
	r.resolvePending()
	if err := r.confirmRemovals(ctx, c); err != nil {
		return err
	}
	return r.confirmAbsent(ctx, c)
}

// bind dials and binds as the sync account.
func (r *syncRun) bind(ctx context.Context) (*conn, error) {
	c, err := r.a.syncConn(ctx)
	if err != nil {
		return nil, r.abort(syncBind, err)
	}
	return c, nil
}

// syncConn dials and binds as the sync account.
func (a *Authenticator) syncConn(ctx context.Context) (*conn, error) {
	bindName, err := a.syncBindName()
	if err != nil {
		return nil, err
	}
	c, err := a.dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.bind(ctx, bindName, a.cfg.SyncPassword); err != nil {
		c.close()
		if isNetworkError(err) || errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return nil, classifyNetwork(err)
		}
		return nil, fmt.Errorf("%w: bind as %q (%s): %w", ErrServiceAccount, bindName, envSyncUsername, err)
	}
	c.as = identity{name: bindName, variable: envSyncUsername}
	return c, nil
}

// relate calls a custom relation syncer for every user the read returned
// and the store holds, as a login would, on a connection bound as the sync
// account.
func (r *syncRun) relate(ctx context.Context) error {
	if len(r.related) == 0 {
		return nil
	}
	syncer := r.a.cfg.SyncRelations
	c, err := r.a.syncConn(ctx)
	if err != nil {
		return wrap(err, "relation syncer %s", formatterName(syncer))
	}
	defer c.close()
	for _, u := range r.related {
		if r.ambiguous[normUser(u.Username)] {
			continue
		}
		if err := syncer.SyncRelations(ctx, &r.a.cfg, u, c); err != nil {
			return wrap(classifyNetwork(err), "relation syncer %s for %q", formatterName(syncer), u.Username)
		}
	}
	return nil
}

// readUsers reads every user entry the login search finds, page by page,
// and admits those a login would admit through the login group's entry.
func (r *syncRun) readUsers(ctx context.Context, c *conn) error {
	a := r.a
	r.progress(syncReadUsers)
	cfg, err := a.searchConfig(ctx, c)
	if err != nil {
		return r.abort(syncReadUsers, err)
	}
	if cfg, err = r.nestedLoginTerm(ctx, c, cfg); err != nil {
		return r.abort(syncReadUsers, orCtxError(ctx, err))
	}
	filter, err := userFilter(cfg, a.cfg.SearchFilters, map[string]string{})
	if err != nil {
		return r.abort(syncReadUsers, wrap(err, "search filter builder %s with an empty lookup", formatterName(a.cfg.SearchFilters)))
	}
	attrs := a.syncAttrs
	if r.custom {
		attrs = a.attrs // what a login reads, for the syncer
	}
	if len(r.extraAttrs) > 0 {
		attrs = append(slices.Clone(attrs), r.extraAttrs...)
	}
	req := ldap.NewSearchRequest(a.cfg.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, filter, attrs, nil)
	referrals := 0
	handle := func(page *ldap.SearchResult) error {
		referrals += len(page.Referrals)
		return r.usersPage(ctx, page)
	}
	err = pagedSearch(ctx, c, req, a.cfg.SyncPageSize, r.whenStored(handle))
	// The pages held for the store are handled however the read ended: a
	// read that fails part-way keeps what its earlier pages wrote.
	if derr := r.drainEarly(handle); err == nil {
		err = derr
	}
	if lerr := r.awaitStore(); lerr != nil {
		return lerr
	}
	if fe := (*errFlush)(nil); errors.As(err, &fe) {
		return &SyncAbortError{Phase: syncApply, Page: r.prog.Pages, Err: orCtxError(ctx, fe.err)}
	}
	if err != nil {
		return r.readError(ctx, err)
	}
	r.saves, r.deferred = append(r.deferred, r.saves...), nil
	if err := r.placeUnnamed(ctx); err != nil {
		return err
	}
	if err := r.admitMissing(ctx, c); err != nil {
		return err
	}
	r.report.Pages = r.prog.Pages
	r.report.DirectoryUsers = r.dirUsers
	// The referral-only check follows admitMissing on purpose. A user it
	// admits was found under the same base by the search a login runs, so
	// the references did not mean "the users are elsewhere": with Active
	// Directory's domain root as the base and Domain Users (everyone's
	// primary group, nobody's memberOf) as the login group, the paged read
	// is references alone while every user may log in. Aborting there would
	// make that setup unsyncable; a sync that admits nobody still aborts.
	if r.prog.Users == 0 && referrals > 0 {
		e := &SyncAbortError{Phase: syncReadUsers, Err: fmt.Errorf("the directory answered %s with %d referrals and no entry", a.cfg.SearchBase, referrals),
			Hint: "referrals are not chased: set LDAP_AUTH_SEARCH_BASE to a base this server holds", Variables: []string{envSearchBase}}
		if a.cfg.usesLoginGroupFilters() && a.loginGroup.dn != "" {
			// From a domain root, references come with every answer: the
			// likelier cause is a login group the filter finds no member of.
			e.Err = fmt.Errorf("no user entry matched the search filters, the login group %s included (the directory answered %s with %d referrals and no entry)", a.loginGroup.dn, a.cfg.SearchBase, referrals)
			e.Hint = "check that LDAP_LOGIN_GROUP has members that LDAP_AUTH_OBJECT_CLASS and the filters match (members of its nested groups count only with LDAP_AUTH_NESTED_GROUPS), and that LDAP_AUTH_SEARCH_BASE holds the users (referrals are not chased)"
			e.Variables = []string{envLoginGroup, envNestedGroups, envSearchBase}
		}
		return e
	}
	return nil
}

// usersPage handles a page of user entries, then writes what it planned
// (flushPage).
func (r *syncRun) usersPage(ctx context.Context, page *ldap.SearchResult) error {
	for _, e := range page.Entries {
		if r.onEntry != nil {
			r.onEntry(e)
		}
		r.entry(e)
	}
	r.prog.Pages++
	r.prog.Users += len(page.Entries)
	r.a.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "ldapauth: sync read a page of users",
		slog.Int("pages", r.prog.Pages), slog.Int("users", r.prog.Users))
	if err := r.flushPage(ctx); err != nil {
		return &errFlush{err}
	}
	r.progress(syncReadUsers)
	return ctx.Err()
}

// maxEarlyPages is how many pages of users the read holds while the
// store is still being read (startLoad).
const maxEarlyPages = 8

// whenStored hands each page to handle once the store is read: the pages
// that come before are held, up to maxEarlyPages, so that the directory is
// read while the store is, and a small directory's read is not held up by
// the store's.
func (r *syncRun) whenStored(handle func(*ldap.SearchResult) error) func(*ldap.SearchResult) error {
	return func(page *ldap.SearchResult) error {
		if !r.storeReady() && len(r.early) < maxEarlyPages {
			r.early = append(r.early, page)
			return nil
		}
		if err := r.drainEarly(handle); err != nil {
			return err
		}
		return handle(page)
	}
}

// drainEarly waits for the store, then hands the pages held to handle, in
// the order they came.
func (r *syncRun) drainEarly(handle func(*ldap.SearchResult) error) error {
	if err := r.awaitStore(); err != nil {
		return err
	}
	for len(r.early) > 0 {
		page := r.early[0]
		r.early[0], r.early = nil, r.early[1:]
		if err := handle(page); err != nil {
			return err
		}
	}
	r.early = nil
	return nil
}

// nestedLoginTerm returns cfg with, for LDAP_AUTH_NESTED_GROUPS=walk and
// the login-group filter, the login-group term widened to the members of
// every group nested in the login group (groupsUnder): the read then finds
// the users a login's walk admits, not only the direct members. With
// active_directory the term already holds the in-chain rule; with nesting
// off it stays the direct term, as a login's.
func (r *syncRun) nestedLoginTerm(ctx context.Context, c *conn, cfg *Config) (*Config, error) {
	a := r.a
	if a.cfg.NestedGroups != NestedGroupsWalk || !a.cfg.usesLoginGroupFilters() || a.loginGroup.dn == "" {
		return cfg, nil
	}
	dns, err := groupsUnder(ctx, c, a.loginGroup, a.cfg.SyncPageSize)
	if err != nil {
		return nil, wrap(err, "groups nested in %s (%s)", a.loginGroup.dn, envLoginGroup)
	}
	cp := *cfg
	cp.loginGroupTerm = anyMemberOf(dns)
	return &cp, nil
}

// readGroups reads the synced groups' entries: all of them when some user
// entry has no memberOf (its memberships come from them); otherwise only
// those in the store that no memberOf mentioned, to learn whether they are
// gone.
func (r *syncRun) readGroups(ctx context.Context, c *conn) error {
	needMembers := len(r.pending) > 0
	probe := false
	if needMembers && len(r.pending) <= pendingProbeLimit {
		// Servers whose filters on member values are known to follow the
		// standard matching rules; any other gets its groups read whole.
		d, err := r.a.directoryType(ctx, c)
		if err != nil {
			return r.abort(syncReadGroups, orCtxError(ctx, err))
		}
		probe = d == DirectoryOpenLDAP || d == Directory389 || d == DirectoryActiveDirectory
	}
	var err error
	var wantDNs, wantUIDs map[string]struct{}
	if needMembers {
		wantDNs = make(map[string]struct{}, len(r.pending))
		wantUIDs = make(map[string]struct{}, len(r.pending))
		for _, p := range r.pending {
			wantDNs[DNKey(p.dn)] = struct{}{}
			wantUIDs[strings.ToLower(p.username)] = struct{}{}
		}
	}
	for _, g := range r.groups {
		if !needMembers && (g.seen || !g.inStore) {
			continue
		}
		var entry *groupEntry
		var state groupState
		probed := false
		if probe {
			entry, probed, err = probeGroup(ctx, c, g.dn, r.pending)
			if err != nil {
				return r.abort(syncReadGroups, orCtxError(ctx, err))
			}
		}
		if !probed {
			entry, state, err = readGroupEntry(ctx, c, g.dn, needMembers)
			if err != nil {
				return r.abort(syncReadGroups, orCtxError(ctx, err))
			}
			if entry != nil {
				entry.index(wantDNs, wantUIDs)
			}
		}
		g.read, g.state, g.entry = true, state, entry
		if err := r.weigh(ctx, c, g); err != nil {
			return r.abort(syncReadGroups, err)
		}
		r.prog.Groups++
		r.progress(syncReadGroups)
	}
	if err := ctx.Err(); err != nil {
		return r.abort(syncReadGroups, ctxError(ctx))
	}
	return nil
}

// pendingProbeLimit is the most entries without memberOf for which the
// sync asks each synced group's entry whether it lists them (probeGroup)
// rather than reading all its member values, on OpenLDAP, 389-DS and
// Active Directory.
const pendingProbeLimit = 32

// probeGroup asks the entry of the group groupDN, by base searches whose
// filters the server evaluates, whether it has member values at all and
// whether it lists each pending user (member or uniqueMember equal to the
// user's DN): a few small answers instead of every member value, which for
// a group of a million members is a message go-ldap decodes whole. It
// returns probed false, for the caller to read the entry whole, when an
// answer is not a plain yes: any error, memberUid values, or no entry for
// the presence filter (the entry may be gone, hidden, or have no member
// values: the whole read tells which).
func probeGroup(ctx context.Context, c *conn, groupDN string, pending []pendingUser) (entry *groupEntry, probed bool, err error) {
	has := func(filter string) (bool, error) {
		res, err := c.Search(ctx, ldap.NewSearchRequest(groupDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, filter, []string{"1.1"}, nil))
		if err != nil {
			if ctx.Err() != nil || isNetworkError(err) {
				return false, classifyNetwork(orCtxError(ctx, err))
			}
			return false, errProbe
		}
		return len(res.Entries) > 0, nil
	}
	// memberUid's matching rule is case-exact (caseExactIA5Match), where
	// ldapauth compares names case-insensitively: a group with memberUid
	// values is read whole, so the probe never decides otherwise than a
	// read would.
	switch uids, err := has("(memberUid=*)"); {
	case errors.Is(err, errProbe), err == nil && uids:
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	switch ok, err := has("(|(member=*)(uniqueMember=*))"); {
	case errors.Is(err, errProbe), err == nil && !ok:
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	entry = &groupEntry{dnKeys: map[string]struct{}{}, uidKeys: map[string]struct{}{}}
	for _, p := range pending {
		dn := ldap.EscapeFilter(p.dn)
		ok, err := has("(|(member=" + dn + ")(uniqueMember=" + dn + "))")
		switch {
		case errors.Is(err, errProbe):
			return nil, false, nil
		case err != nil:
			return nil, false, err
		case ok:
			entry.dnKeys[DNKey(p.dn)] = struct{}{}
		}
	}
	return entry, true, nil
}

// errProbe: a probe of a group's entry got an answer other than yes or no.
var errProbe = errors.New("ldapauth: the group probe was not answered")

// resolvePending places the users read without memberOf in the synced
// groups whose entries list them.
func (r *syncRun) resolvePending() {
	for _, p := range r.pending {
		for i, g := range r.groups {
			member, known := memberByRule(false, false, g.entry, p.dn, p.username)
			switch {
			case !known:
			case !member && r.indirect(p.primaryGroupID) && r.isCurrent(i, p.username):
				r.confirm = append(r.confirm, confirmRemoval{group: i, user: r.confirmUser(p.dn, p.username, p.primaryGroupID, false, nil)})
			default:
				r.member(i, p.dn, p.username, member)
			}
		}
	}
	r.pending = nil
}

// confirmRemovals checks the removals a login might not make as a login
// checks them (a bounded number of queries: one set per planned removal,
// never per user).
func (r *syncRun) confirmRemovals(ctx context.Context, c *conn) error {
	for _, cr := range r.confirm {
		g := r.groups[cr.group]
		if g.gone {
			continue // removed with the group
		}
		member, err := r.a.newMemberCheck(cr.user, c).indirect(ctx, g.ref)
		if err != nil {
			return r.abort(syncReadGroups, orCtxError(ctx, err))
		}
		if !member {
			r.member(cr.group, cr.user.DN, cr.user.Username, false)
		}
	}
	r.confirm = nil
	return nil
}

// orCtxError is ctx's error once ctx has ended, else err.
func orCtxError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	return err
}

// weigh decides what the read of synced group g proves: gone (only with
// proveGone's proof, for a group the store holds), or kept with a note
// when the read confirmed nothing about a group the store holds.
func (r *syncRun) weigh(ctx context.Context, c *conn, g *syncedGroup) error {
	switch g.state {
	case groupNoSuchObject:
		if !g.inStore {
			g.gone = true // nothing to remove; nothing is added to it either
			return nil
		}
		why, err := proveGone(ctx, c, g.dn)
		if err != nil {
			return err
		}
		g.gone = why == ""
		if !g.gone {
			g.note = "not confirmed gone: noSuchObject, which is also the answer for an entry an access rule hides, and " + why + "; kept"
		}
	case groupUnconfirmed:
		if g.inStore {
			g.note = "not confirmed gone: the directory returned neither the entry nor noSuchObject (an access rule, or a server such as GLAuth); kept"
		}
	case groupNoMemberValues:
		if g.inStore && len(g.members) > 0 {
			g.note = fmt.Sprintf("its entry came without member, uniqueMember or memberUid values (an access rule may hide them): the %d memberships it would decide are kept", len(g.members))
		}
	}
	return nil
}

// proveGone asks the directory, as the sync account, to prove that the
// group groupDN, whose base search answered noSuchObject, is gone rather
// than hidden by an access rule (OpenLDAP answers both with noSuchObject).
// It returns "" when it is proven, or why it is not. The proof is three
// answers an access rule hiding the group cannot give:
//   - noSuchObject again, naming as its matched DN an entry above the
//     group: the server found that entry and nothing below it on the way
//     to the group (for an entry it hides, OpenLDAP names none);
//   - a base search of that entry returns it: the account may read there;
//   - a one-level search under it for the next entry on the way to the
//     group (by its RDN) succeeds and does not return it.
//
// A server that names no matched DN never proves a group gone: such groups
// are kept, and reported. Errors are those of the connection or ctx.
func proveGone(ctx context.Context, dir Directory, groupDN string) (string, error) {
	_, err := dir.Search(ctx, groupSearch(groupDN, []string{"1.1"}))
	switch {
	case err == nil:
		return "a second read did not answer it", nil
	case !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		_, err := groupSearchError(ctx, groupDN, err)
		return "", err
	}
	var ldapErr *ldap.Error
	if !errors.As(err, &ldapErr) || ldapErr.MatchedDN == "" {
		return "the answer names no matched DN (OpenLDAP names none for a hidden entry)", nil
	}
	matched := ldapErr.MatchedDN
	group, gerr := ldap.ParseDN(groupDN)
	above, merr := ldap.ParseDN(matched)
	if gerr != nil || merr != nil || !above.AncestorOfFold(group) {
		return fmt.Sprintf("the matched DN %q is not above the group", matched), nil
	}
	next := &ldap.DN{RDNs: group.RDNs[len(group.RDNs)-len(above.RDNs)-1:]}
	var terms strings.Builder
	for _, av := range next.RDNs[0].Attributes {
		fmt.Fprintf(&terms, "(%s=%s)", av.Type, ldap.EscapeFilter(av.Value))
	}
	reads := []struct {
		scope  int
		filter string
	}{{ldap.ScopeBaseObject, "(objectClass=*)"}, {ldap.ScopeSingleLevel, "(&" + terms.String() + ")"}}
	for i, rd := range reads {
		res, err := dir.Search(ctx, ldap.NewSearchRequest(matched, rd.scope, ldap.NeverDerefAliases, 0, 0, false, rd.filter, []string{"1.1"}, nil))
		if err != nil {
			if ctx.Err() != nil {
				return "", ctxError(ctx)
			}
			if isNetworkError(err) {
				return "", wrap(classifyNetwork(err), "read %s", matched)
			}
			return fmt.Sprintf("the sync account cannot read %s, the entry the answer names (%s)", matched, unprefixed(err)), nil
		}
		switch {
		case i == 0 && len(res.Entries) == 0:
			return fmt.Sprintf("the sync account is not shown %s, the entry the answer names", matched), nil
		case i == 1 && slices.ContainsFunc(res.Entries, func(e *ldap.Entry) bool { return DNKey(e.DN) == DNKey(next.String()) }):
			return fmt.Sprintf("a one-level search of %s returns %s", matched, next), nil
		}
	}
	return "", nil
}

// admitMissing gives each directory-managed user the paged read did not
// return the second look a login gives: with the login-group filter
// (LoginGroupFilters and LDAP_LOGIN_GROUP), a login also admits a user the
// memberOf term leaves out who belongs to the login group as the Active
// Directory primary group or through nesting (LDAP_AUTH_NESTED_GROUPS=walk),
// so the sync must not remove such a user. It costs one search (and the
// membership check) per user the read missed, never per user read.
func (r *syncRun) admitMissing(ctx context.Context, c *conn) error {
	a := r.a
	if !a.cfg.usesLoginGroupFilters() || a.loginGroup.dn == "" {
		return nil
	}
	if err := r.loadMissing(ctx); err != nil {
		return err
	}
	proof := newMemberProof(c)
	for _, m := range r.missing() {
		if m.present {
			continue
		}
		adm, err := a.admitLoginGroup(ctx, c, m.Username)
		if err != nil {
			return r.abort(syncReadUsers, orCtxError(ctx, err))
		}
		if adm.check != nil {
			r.entry(adm.entry)
			r.prog.Users++
		} else if adm.entry != nil {
			why, err := r.loginGroupUnconfirmed(ctx, proof, adm.entry, m.Username)
			if err != nil {
				return r.abort(syncReadUsers, err)
			}
			if why != "" {
				m.present = true
				r.keep(m.Username, "", why)
			}
		}
	}
	return nil
}

// readError turns an error of the paged read into a SyncAbortError with a
// hint where a setting can fix it.
func (r *syncRun) readError(ctx context.Context, err error) error {
	e := &SyncAbortError{Phase: syncReadUsers, Page: r.prog.Pages + 1, Err: err}
	paging := r.a.cfg.SyncPageSize > 0 && !r.unpaged
	switch {
	case ctx.Err() != nil:
		e.Err = ctxError(ctx)
	case r.unpaged && ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		e.Hint = "the refresh that reads every entry is one search, not paged: raise the sync account's size limit above the number of users (OpenLDAP: limits ... size=unlimited)"
		e.Variables = []string{envSyncUsername}
	case r.unpaged && ldap.IsErrorWithCode(err, ldap.LDAPResultTimeLimitExceeded):
		e.Hint = "the refresh that reads every entry is one search, not paged: raise the sync account's time limit"
		e.Variables = []string{envSyncUsername}
	case isNetworkError(err):
		// conn.do has made a connection reset mid-answer, which go-ldap
		// reports as a plain error, a network error.
		e.Err = classifyNetwork(err)
	case errors.Is(err, errPagingLost):
		e.Hint = "the server, or a proxy in front of it, dropped the paging control part-way: fix that, or read without paging (LDAP_SYNC_PAGE_SIZE=off)"
		e.Variables = []string{envSyncPageSize}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		e.Hint = "the sync account's size limit cut the result: raise its limit (OpenLDAP: size.prtotal for paged searches) or page with LDAP_SYNC_PAGE_SIZE"
		e.Variables = []string{envSyncPageSize}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultTimeLimitExceeded):
		e.Hint = "the sync account's time limit cut the result: raise it, or use smaller pages (LDAP_SYNC_PAGE_SIZE)"
		e.Variables = []string{envSyncPageSize}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		e.Hint = "the search base does not exist, or the sync account may not read it: check LDAP_AUTH_SEARCH_BASE and the account's access"
		e.Variables = []string{envSearchBase, envSyncUsername}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultReferral):
		e.Hint = "referrals are not chased: set LDAP_AUTH_SEARCH_BASE to a base this server holds"
		e.Variables = []string{envSearchBase}
	case r.inChainRefused(err):
		// The filter holds the in-chain rule: that is what the server
		// refused.
		e.Err = inChainUnsupported(r.a.cfg.DirectoryType, err)
		e.Hint = "set LDAP_AUTH_NESTED_GROUPS=walk"
		e.Variables = []string{envNestedGroups}
	case paging && pagingRefused(err):
		e.Hint = "the server refused the paged search: set LDAP_SYNC_PAGE_SIZE=off to read without paging"
		e.Variables = []string{envSyncPageSize}
	}
	return e
}

// inChainRefused reports whether err is the server refusing the login
// filter's in-chain rule (LDAP_AUTH_NESTED_GROUPS=active_directory with a
// login group).
func (r *syncRun) inChainRefused(err error) bool {
	return r.a.cfg.NestedGroups == NestedGroupsActiveDirectory && r.a.loginGroup.dn != "" && r.a.cfg.usesLoginGroupFilters() &&
		ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension)
}

// pagingRefused reports whether err is an answer a server gives a paged
// search it will not page.
func pagingRefused(err error) bool {
	return ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform)
}

// pagedSearch runs req page by page (RFC 2696, pageSize entries a page) on
// c, handing each page to each. The next page is asked for as soon as a
// page has come, before each handles it, so that the server produces it
// while the caller works (writes a page's users to its store): at most two
// pages are held. A pageSize of noPaging (or less than 1) runs one
// unpaged search. It stops at the first error, of the server or of each;
// a page asked for and not handed over is dropped.
func pagedSearch(ctx context.Context, c Directory, req *ldap.SearchRequest, pageSize int, each func(*ldap.SearchResult) error) error {
	if pageSize <= 0 {
		res, err := c.Search(ctx, req)
		if err != nil {
			return err
		}
		return each(res)
	}
	paging := ldap.NewControlPaging(uint32(pageSize))
	req.Controls = append(slices.Clip(req.Controls), paging)
	type page struct {
		res *ldap.SearchResult
		err error
	}
	pages := make(chan page) // unbuffered: one page handled, one held
	stop := make(chan struct{})
	defer func() {
		// Wait for the page in flight, if any: the caller may use c
		// again once this returns.
		close(stop)
		for range pages {
		}
	}()
	go func() {
		defer close(pages)
		for n := 1; ; n++ {
			res, err := c.Search(ctx, req)
			var ctrl *ldap.ControlPaging
			if err == nil {
				var ok bool
				ctrl, ok = ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
				if !ok && n > 1 {
					// The server paged, then stopped saying where it is:
					// the read may be cut short, and a short read must
					// remove nothing.
					res, err = nil, errPagingLost
				}
			}
			select {
			case pages <- page{res, err}:
			case <-stop:
				return
			}
			if err != nil || ctrl == nil || len(ctrl.Cookie) == 0 {
				// No control on the first page: the server ignored the
				// (non-critical) request and sent everything; an empty
				// cookie: that was the last page.
				return
			}
			paging.SetCookie(ctrl.Cookie)
		}
	}()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := each(p.res); err != nil {
			return err
		}
	}
	return nil
}

var errPagingLost = errors.New("ldapauth: a page of the paged search came back without the paging control, so the read may be incomplete")

// memberOfIndex returns the index of the synced group the memberOf value
// names, or -1.
func (r *syncRun) memberOfIndex(v string) int {
	if i, ok := r.dnCache[v]; ok {
		return i
	}
	i, ok := r.groupIdx[DNKey(v)]
	if !ok {
		i = -1
	}
	r.dnCache[v] = i
	return i
}

// entry handles one user entry of the read.
func (r *syncRun) entry(e *ldap.Entry) {
	username, ok := r.username(e)
	if !ok {
		return
	}
	su, ok := r.markPresent(e, username)
	if !ok {
		return
	}
	r.sawFields(e)
	hasMemberOf := r.matchMemberOf(e)
	if su == nil && !r.opts.CreateUsers {
		return
	}
	r.planUser(e, su, username)
	if r.custom {
		u := r.a.userFromEntry(e)
		u.Username, u.Fields["username"] = username, username
		r.related = append(r.related, u)
	}
	pgid := e.GetEqualFoldAttributeValue("primaryGroupID")
	if !hasMemberOf {
		r.pending = append(r.pending, pendingUser{username: username, dn: e.DN, primaryGroupID: pgid})
		return
	}
	for i := range r.groups {
		member, _ := memberByRule(true, slices.Contains(r.matched, i), nil, e.DN, username)
		if !member && r.indirect(pgid) && r.isCurrent(i, username) {
			r.confirm = append(r.confirm, confirmRemoval{group: i, user: r.confirmUser(e.DN, username, pgid, true, e.GetEqualFoldAttributeValues("memberOf"))})
			continue
		}
		r.member(i, e.DN, username, member)
	}
}

// username is the entry's one username; an entry without one is placed
// after the read (placeUnnamed), one with several is left unchanged
// (multiValued).
func (r *syncRun) username(e *ldap.Entry) (string, bool) {
	values := e.GetEqualFoldAttributeValues(r.a.cfg.usernameAttribute())
	username, n := "", 0
	for _, v := range values {
		if v != "" {
			username = cmp.Or(username, v)
			n++
		}
	}
	switch {
	case n == 0:
		r.unnamed = append(r.unnamed, e.DN)
		return "", false
	case n > 1:
		r.multiValued(e.DN, slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == "" }))
		return "", false
	}
	return username, true
}

// markPresent records that the directory holds username and returns the
// stored user, if any; a username on more than one entry is skipped.
func (r *syncRun) markPresent(e *ldap.Entry, username string) (*storeUser, bool) {
	key := r.userKey(username)
	su := r.users.get(key)
	dup := su != nil && su.present
	if su == nil {
		dup = r.seen.has(key)
	}
	if dup {
		r.ambiguous[normUser(username)] = true
		r.report.Skipped = append(r.report.Skipped, Notice{DN: e.DN,
			Reason: fmt.Sprintf("username %q is on more than one entry: the user is kept, nothing else changes for it", username)})
		return nil, false
	}
	if su == nil {
		r.seen.add(key)
	} else {
		su.present = true
	}
	r.dirUsers++
	return su, true
}

// matchMemberOf sets r.matched to the synced groups in the entry's
// memberOf, marking them seen, and reports whether it has memberOf.
func (r *syncRun) matchMemberOf(e *ldap.Entry) (hasMemberOf bool) {
	r.matched = r.matched[:0]
	for _, attr := range e.Attributes {
		if !strings.EqualFold(attr.Name, "memberOf") {
			continue
		}
		hasMemberOf = true
		for _, v := range attr.Values {
			if i := r.memberOfIndex(v); i >= 0 {
				r.groups[i].seen = true
				r.matched = append(r.matched, i)
			}
		}
	}
	return hasMemberOf
}

// planUser plans the user's creation (su nil), or its update and
// organisation join when the store's copy differs.
func (r *syncRun) planUser(e *ldap.Entry, su *storeUser, username string) {
	if su == nil {
		r.saves = append(r.saves, r.user(e, username))
		r.report.UsersCreated = append(r.report.UsersCreated, username)
		if r.a.cfg.OrganisationID != "" {
			// The report lists it with the joins in plan: a first sync's
			// largest lists are not held twice during the read.
			r.joins = append(r.joins, username)
		}
		return
	}
	update := su.fp != r.entryFingerprint(e, username, e.DN)
	if update {
		r.saves = append(r.saves, r.user(e, username))
		r.report.UsersUpdated = append(r.report.UsersUpdated, username)
	}
	if orgID := r.a.cfg.OrganisationID; orgID != "" && !su.joined {
		r.report.OrganisationJoins = append(r.report.OrganisationJoins, username)
		r.joins = append(r.joins, username)
	}
}

// multiValued skips an entry whose username attribute has several values:
// which of them is the user cannot be told, so it is mapped onto no user's
// record. The stored users they name are kept, unchanged.
func (r *syncRun) multiValued(dn string, names []string) {
	quoted := make([]string, len(names))
	for i, n := range names {
		if len(n) > 64 {
			n = n[:64] + "..."
		}
		quoted[i] = strconv.Quote(n)
	}
	r.report.Skipped = append(r.report.Skipped, Notice{DN: dn,
		Reason: fmt.Sprintf("%d values of %s (%s): which one is the user is ambiguous, so the entry is mapped to no user; the users they name are kept unchanged",
			len(names), r.a.cfg.usernameAttribute(), strings.Join(quoted, ", "))})
	for _, n := range names {
		r.ambiguous[normUser(n)] = true
		key := r.userKey(n)
		if su := r.users.get(key); su != nil {
			su.present = true
		} else {
			r.seen.add(key)
		}
	}
}

// placeUnnamed places the entries read without the username attribute (an
// access rule may hide it): one whose DN is a stored user's keeps that
// user, unchanged; when one matches no stored user, any user the read
// missed may be that entry, so the run holds back its removals.
func (r *syncRun) placeUnnamed(ctx context.Context) error {
	if len(r.unnamed) == 0 {
		return nil
	}
	attr := r.a.cfg.usernameAttribute()
	if err := r.loadMissing(ctx); err != nil {
		return err
	}
	byDN := map[string]missingUser{}
	for _, m := range r.missing() {
		if m.DN != "" {
			byDN[DNKey(m.DN)] = m
		}
	}
	unmatched := 0
	for _, dn := range r.unnamed {
		if m, ok := byDN[DNKey(dn)]; ok && !m.present {
			m.present = true
			r.ambiguous[normUser(m.Username)] = true
			r.report.Skipped = append(r.report.Skipped, Notice{DN: dn,
				Reason: fmt.Sprintf("no %s attribute (the username field; an access rule may hide it): matched by DN to the stored user %q, kept unchanged", attr, m.Username)})
			continue
		}
		unmatched++
		r.report.Skipped = append(r.report.Skipped, Notice{DN: dn,
			Reason: fmt.Sprintf("no %s attribute (the username field; an access rule may hide it), and no stored user has this DN: removals are held back", attr)})
	}
	if unmatched > 0 {
		r.hold = fmt.Sprintf("%d entries without the %s attribute match no stored user by DN, so any stored user the read missed may be one of them; fix the entries or the sync account's access, or force", unmatched, attr)
	}
	r.unnamed = nil
	return nil
}

// indirect reports whether a login could count a membership that the
// direct rule does not: nested groups are on, or the entry has an Active
// Directory primary group.
func (r *syncRun) indirect(primaryGroupID string) bool {
	return r.a.cfg.NestedGroups != nestedGroupsOff || primaryGroupID != ""
}

// isCurrent reports whether the store has the user in synced group i.
func (r *syncRun) isCurrent(i int, username string) bool {
	_, ok := r.groups[i].members[r.userKey(username)]
	return ok
}

// confirmUser builds the little of a User that the login's indirect
// membership checks read.
func (r *syncRun) confirmUser(dn, username, pgid string, hasMemberOf bool, memberOf []string) *User {
	u := &User{DN: dn, Username: username, Groups: memberOf, hasMemberOf: hasMemberOf, Attributes: map[string][]string{}}
	if pgid != "" {
		u.Attributes["primaryGroupID"] = []string{pgid}
	}
	return u
}

// user maps the entry as a login does, without the attributes the sync
// does not read.
func (r *syncRun) user(e *ldap.Entry, username string) *User {
	u := &User{DN: e.DN, Username: username, Fields: make(map[string]string, len(r.a.cfg.UserFields))}
	for field, attr := range r.a.cfg.UserFields {
		if v := e.GetEqualFoldAttributeValue(attr); v != "" {
			u.Fields[field] = v
		}
	}
	return u
}

// member plans the membership of the user (entry dn) in synced group i.
func (r *syncRun) member(i int, dn, username string, member bool) {
	g := r.groups[i]
	key := r.userKey(username)
	_, current := g.members[key]
	switch {
	case member && !current:
		r.report.MembershipsAdded = append(r.report.MembershipsAdded, Membership{GroupDN: g.dn, Username: username})
	case !member && current:
		r.report.MembershipsRemoved = append(r.report.MembershipsRemoved, Membership{GroupDN: g.dn, Username: username})
		r.memberDNs[key] = dn // for the removal's proof
	}
}

// plan completes the report from what was read.
func (r *syncRun) plan() {
	rep := r.report
	for _, m := range r.missing() {
		rep.UsersRemoved = append(rep.UsersRemoved, m.Username)
	}
	gone := map[string]bool{}
	for _, g := range r.groups {
		switch {
		case !g.read:
		case g.gone:
			gone[g.dn] = true
			if g.inStore {
				rep.GroupsRemoved = append(rep.GroupsRemoved, g.group)
			}
		case g.note != "":
			rep.GroupsLeftAlone = append(rep.GroupsLeftAlone, Notice{DN: g.group.DN, Reason: g.note})
		}
	}
	for _, g := range r.others {
		rep.GroupsLeftAlone = append(rep.GroupsLeftAlone, Notice{DN: g.DN, Reason: "not in " + envSyncedGroups})
	}
	keep := func(m Membership) bool { return !gone[m.GroupDN] && !r.ambiguous[normUser(m.Username)] }
	rep.MembershipsAdded = slices.DeleteFunc(rep.MembershipsAdded, func(m Membership) bool { return !keep(m) })
	rep.MembershipsRemoved = slices.DeleteFunc(rep.MembershipsRemoved, func(m Membership) bool { return !keep(m) })
	r.dropAmbiguous()
	if len(r.unwritten) > 0 {
		unwritten := func(name string) bool { return r.unwritten[normUser(name)] }
		rep.UsersUpdated = slices.DeleteFunc(rep.UsersUpdated, unwritten)
		rep.UsersCreated = slices.DeleteFunc(rep.UsersCreated, unwritten)
		rep.OrganisationJoins = slices.DeleteFunc(rep.OrganisationJoins, unwritten)
	}
	if r.a.cfg.OrganisationID != "" {
		rep.OrganisationJoins = append(rep.OrganisationJoins, rep.UsersCreated...) // every user created joins
	}
	for _, g := range r.groups {
		if g.inStore || gone[g.dn] {
			continue
		}
		if slices.ContainsFunc(rep.MembershipsAdded, func(m Membership) bool { return m.GroupDN == g.dn }) {
			rep.GroupsCreated = append(rep.GroupsCreated, Group{DN: g.dn, Name: g.ref.name})
		}
	}

	slices.Sort(rep.UsersRemoved)
	slices.Sort(rep.UsersUpdated)
	slices.Sort(rep.UsersCreated)
	slices.Sort(rep.OrganisationJoins)
	byDN := func(a, b Group) int { return strings.Compare(a.DN, b.DN) }
	slices.SortFunc(rep.GroupsCreated, byDN)
	slices.SortFunc(rep.GroupsRemoved, byDN)
	slices.SortFunc(rep.GroupsLeftAlone, func(a, b Notice) int { return strings.Compare(a.DN, b.DN) })
	byMember := func(a, b Membership) int {
		if c := strings.Compare(a.GroupDN, b.GroupDN); c != 0 {
			return c
		}
		return strings.Compare(a.Username, b.Username)
	}
	slices.SortFunc(rep.MembershipsAdded, byMember)
	slices.SortFunc(rep.MembershipsRemoved, byMember)
	var held []Notice
	if r.hold != "" && !r.opts.Force {
		held = heldRemovals(r.hold, rep)
		rep.UsersRemoved, rep.GroupsRemoved, rep.MembershipsRemoved = nil, nil, nil
	}
	r.weighRemovals()
	rep.RemovalGuard.Held = held
}

// weighRemovals fills the report's RemovalGuard: each kind of removal
// against its own total in the store.
func (r *syncRun) weighRemovals() {
	rep := r.report
	limit := r.a.cfg.SyncMaxRemovalPercent
	count := func(remove, total int) RemovalCount {
		return RemovalCount{Remove: remove, Total: total, OverLimit: remove > syncRemovalAllowance && remove*100 > limit*total}
	}
	groups, memberships := 0, r.membershipTotal()
	for _, g := range r.groups {
		if g.inStore {
			groups++
		}
	}
	rep.RemovalGuard = RemovalGuard{
		LimitPercent: limit,
		Allowance:    syncRemovalAllowance,
		Users:        count(len(rep.UsersRemoved), rep.StoreUsers),
		Groups:       count(len(rep.GroupsRemoved), groups),
		Memberships:  count(len(rep.MembershipsRemoved), memberships),
	}
	if len(rep.UsersRemoved) > 0 && rep.DirectoryUsers == 0 {
		rep.RemovalGuard.Users.OverLimit = true // a wrong filter or an emptied login group looks like this
	}
}

// guard applies the removal guard to what weighRemovals weighed.
func (r *syncRun) guard() error {
	g := r.report.RemovalGuard
	if r.opts.Force || !g.overLimit() {
		return nil
	}
	refusal := &guardRefusal{guard: g, emptyDirectory: g.Users.Remove > 0 && r.report.DirectoryUsers == 0}
	hint := "check the plan, then force"
	if refusal.emptyDirectory {
		hint = "check the search base and filters, then force"
	}
	return &SyncAbortError{Phase: "removal guard", Hint: hint, Err: refusal}
}

// apply writes the plan: additions first, removals last, so that a run
// stopped part-way has removed as little as possible. A [BatchStore] gets
// the writes in that order, in batches of at most the page size. In a
// streaming run the creates, updates and joins of the pages read are
// already written (flushPage): what is left are the deferred updates,
// those of users admitted after the read, memberships and removals.
func (r *syncRun) apply(ctx context.Context) error {
	store := r.a.cfg.Store
	rep := r.report
	runs := []writeRun{{len(rep.GroupsCreated), func(i int) write {
		g := rep.GroupsCreated[i]
		return write{"save group", func() error { return store.SaveGroup(ctx, g) },
			func(b *Batch) { b.SaveGroups = append(b.SaveGroups, g) }}
	}}}
	runs = r.userWrites(ctx, runs)
	runs = append(runs, writeRun{len(rep.MembershipsAdded), func(i int) write {
		m := rep.MembershipsAdded[i]
		return write{"set member", func() error { return store.SetMember(ctx, m.GroupDN, m.Username, true) },
			func(b *Batch) { b.AddMembers = append(b.AddMembers, m) }}
	}}, writeRun{len(rep.MembershipsRemoved), func(i int) write {
		m := rep.MembershipsRemoved[i]
		return write{"remove member", func() error { return store.SetMember(ctx, m.GroupDN, m.Username, false) },
			func(b *Batch) { b.RemoveMembers = append(b.RemoveMembers, m) }}
	}}, writeRun{len(rep.GroupsRemoved), func(i int) write {
		dn := rep.GroupsRemoved[i].DN
		return write{"delete group", func() error { return store.DeleteGroup(ctx, dn) },
			func(b *Batch) { b.DeleteGroups = append(b.DeleteGroups, dn) }}
	}}, writeRun{len(rep.UsersRemoved), func(i int) write {
		name := rep.UsersRemoved[i]
		return write{"delete user", func() error { return store.DeleteUser(ctx, name) },
			func(b *Batch) { b.DeleteUsers = append(b.DeleteUsers, name) }}
	}})
	r.prog.Total = writeCount(runs)
	r.progress(syncApply)
	return r.write(ctx, runs, true)
}

// write is one change to the store: one call, or its part of a Batch.
type write struct {
	op    string
	do    func() error
	batch func(*Batch)
}

// writeRun is n writes of one kind, each made when its turn comes (at), so
// that a plan of a million memberships is not a million closures at once.
type writeRun struct {
	n  int
	at func(i int) write
}

func writeCount(runs []writeRun) int {
	n := 0
	for _, run := range runs {
		n += run.n
	}
	return n
}

// writes yields the writes of runs in order.
func writes(runs []writeRun) iter.Seq[write] {
	return func(yield func(write) bool) {
		for _, run := range runs {
			for i := range run.n {
				if !yield(run.at(i)) {
					return
				}
			}
		}
	}
}

// userWrites appends the saves and organisation joins planned (r.saves,
// r.joins) to runs.
func (r *syncRun) userWrites(ctx context.Context, runs []writeRun) []writeRun {
	store := r.a.cfg.Store
	orgID := r.a.cfg.OrganisationID
	saves, joins := r.saves, r.joins
	return append(runs, writeRun{len(saves), func(i int) write {
		u := saves[i]
		return write{"save user", func() error { return store.SaveUser(ctx, u) },
			func(b *Batch) { b.SaveUsers = append(b.SaveUsers, u) }}
	}}, writeRun{len(joins), func(i int) write {
		name := joins[i]
		return write{"join organisation", func() error { return store.JoinOrganisation(ctx, name, orgID) },
			func(b *Batch) { b.Joins = append(b.Joins, OrganisationJoin{name, orgID}) }}
	}})
}

// write makes the writes, through ApplyBatch in batches of at most the
// page size for a [BatchStore]; progress says whether it reports them.
func (r *syncRun) write(ctx context.Context, runs []writeRun, progress bool) error {
	total := writeCount(runs)
	if bs, ok := r.a.cfg.Store.(BatchStore); ok {
		size := r.a.cfg.SyncPageSize
		if size <= 0 {
			size = defaultSyncPageSize
		}
		done := 0
		var b Batch
		flush := func() error {
			if ctx.Err() != nil {
				return wrap(ctx.Err(), "sync stopped after %d of %d changes", done, total)
			}
			if err := bs.ApplyBatch(ctx, &b); err != nil {
				return wrap(&StoreError{Op: "apply batch", Err: err}, "sync stopped after %d of %d changes", done, total)
			}
			done += b.Len()
			b = Batch{}
			if progress {
				r.prog.Done = done
				r.progress(syncApply)
			}
			return nil
		}
		for w := range writes(runs) {
			w.batch(&b)
			if b.Len() == size {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if b.Len() == 0 {
			return nil
		}
		return flush()
	}
	i := 0
	for w := range writes(runs) {
		if ctx.Err() != nil {
			return wrap(ctx.Err(), "sync stopped after %d of %d changes", i, total)
		}
		if err := w.do(); err != nil {
			return wrap(&StoreError{Op: w.op, Err: err}, "sync stopped after %d of %d changes", i, total)
		}
		i++
		if progress {
			r.prog.Done = i
			if r.prog.Done%500 == 0 {
				r.progress(syncApply)
			}
		}
	}
	return nil
}

// dropAmbiguous drops from the saves and joins not yet written those of
// the users the run leaves unchanged (r.ambiguous), recording them in
// r.unwritten.
func (r *syncRun) dropAmbiguous() {
	if len(r.ambiguous) == 0 {
		return
	}
	drop := func(name string) bool {
		key := normUser(name)
		if !r.ambiguous[key] {
			return false
		}
		if r.unwritten == nil {
			r.unwritten = map[string]bool{}
		}
		r.unwritten[key] = true
		return true
	}
	r.saves = slices.DeleteFunc(r.saves, func(u *User) bool { return drop(u.Username) })
	r.deferred = slices.DeleteFunc(r.deferred, func(u *User) bool { return drop(u.Username) })
	r.joins = slices.DeleteFunc(r.joins, drop)
}

// flushPage writes, in a streaming run, the creates, updates and
// organisation joins planned from the pages read so far: the directory's
// truth, whatever the rest of the read brings. An update that may keep a
// stored field no entry has carried yet (keepUnreadFields) waits in
// r.deferred for the end of the read. Nothing is removed here.
func (r *syncRun) flushPage(ctx context.Context) error {
	if !r.stream {
		return nil
	}
	r.dropAmbiguous()
	now := r.saves[:0:0]
	for _, u := range r.saves {
		if r.mayKeepUnread(u) {
			r.deferred = append(r.deferred, u)
		} else {
			now = append(now, u)
		}
	}
	r.saves = now
	runs := r.userWrites(ctx, nil)
	r.saves, r.joins = nil, nil
	if writeCount(runs) == 0 {
		return nil
	}
	if bs, ok := r.a.cfg.Store.(BatchStore); ok {
		// The page's users with their joins: one batch, one transaction.
		var b Batch
		for w := range writes(runs) {
			w.batch(&b)
		}
		if err := bs.ApplyBatch(ctx, &b); err != nil {
			return &StoreError{Op: "apply batch", Err: err}
		}
		return nil
	}
	return r.write(ctx, runs, false)
}

// mayKeepUnread reports whether u is an update of a stored user lacking a
// mapped field that no entry of the read has carried so far.
func (r *syncRun) mayKeepUnread(u *User) bool {
	if r.users.get(r.userKey(u.Username)) == nil {
		return false // created: nothing stored to keep
	}
	for field := range r.a.cfg.UserFields {
		if _, ok := u.Fields[field]; !ok && !r.fieldsSeen[field] {
			return true
		}
	}
	return false
}

// errFlush is a page's writes failing during the read.
type errFlush struct{ err error }

func (e *errFlush) Error() string { return e.err.Error() }
func (e *errFlush) Unwrap() error { return e.err }
