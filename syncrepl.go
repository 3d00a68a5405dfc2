package ldapauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// SyncStateStore is an optional interface of a UserStore: it keeps
// SyncChanges' state (opaque bytes) between runs.
type SyncStateStore interface {
	LoadSyncState(ctx context.Context) ([]byte, error)     // the state last saved, or nil
	SaveSyncState(ctx context.Context, state []byte) error // replaces it
}

// ChangeStore is an optional interface of a [SyncStateStore]: with it, an
// incremental [Authenticator.SyncChanges] run reads and writes only the
// state of the entries that changed, and looks up only the users they name
// (docs/store.md).
type ChangeStore interface {
	SyncStateStore
	LookupUsers(ctx context.Context, usernames []string) iter.Seq2[StoredUser, error]
	LookupMembers(ctx context.Context, usernames []string) iter.Seq2[GroupMembers, error]
	LoadEntries(ctx context.Context, ids []string) (map[string][]byte, error)
	SaveChanges(ctx context.Context, state []byte, entries map[string][]byte, deleted []string, replace bool) error
}

// The modes of a change-driven run ([ChangeSync.Mode]).
const (
	// changeSyncIncremental: the directory returned only what changed
	// since the stored cookie.
	changeSyncIncremental = "incremental"
	// changeSyncFullRefresh: a content synchronisation without a cookie,
	// which returns every entry (and the cookie for the next run).
	changeSyncFullRefresh = "full refresh"
	// changeSyncFull: the paged full sync of [Authenticator.Sync]; no
	// cookie is kept.
	changeSyncFull = "full sync"
)

// ChangeSync is how SyncChanges read the directory: Mode "incremental",
// "full refresh" or "full sync", the Fallback's reason (docs/sync.md).
type ChangeSync struct {
	Mode       string `json:"mode"`
	Fallback   string `json:"fallback,omitempty"`
	Changed    int    `json:"changed"`
	Deleted    int    `json:"deleted"`
	Phase      string `json:"phase,omitempty"`
	StateSaved bool   `json:"state_saved"`
}

// changeState is the state SyncChanges keeps through a SyncStateStore.
type changeState struct {
	Version int `json:"v"`
	// Fingerprint is of the settings that decide what the search returns:
	// a cookie is only good for the same search.
	Fingerprint string `json:"fingerprint"`
	Cookie      []byte `json:"cookie"`
	// Entries are the entries the search returned, by entryUUID: a
	// deletion carries only the entryUUID, and an unchanged entry is not
	// sent at all. Kept here for a store without [ChangeStore]; one with it
	// keeps them one by one (SaveChanges), and Count says how many.
	Entries map[string]changeEntry `json:"entries,omitempty"`
	Count   int                    `json:"count,omitempty"`
	// StoreUsers and Memberships are the numbers of directory-managed
	// users and of memberships of synced groups in the store after the
	// last run: the removal guard's totals for a run that looks up only
	// the users the changes name (ChangeStore).
	StoreUsers  int `json:"store_users,omitempty"`
	Memberships int `json:"memberships,omitempty"`
	// Groups are the synced groups and the login group, by DNKey: their
	// entryCSN and members when last read. The memberof overlay's writes
	// to a user's memberOf change no entryCSN, so a join or a leave shows
	// only on the group's entry.
	Groups map[string]changeGroup `json:"groups"`
	// MemberOf is set once an entry read had memberOf values: the
	// directory keeps memberOf, and an entry without any is in no group.
	MemberOf bool `json:"member_of,omitempty"`
}

// changeGroup is what the state keeps of a group: its entryCSN and its
// members (DNKey of member and uniqueMember values, "uid:" and the folded
// name for memberUid values).
type changeGroup struct {
	CSN     string   `json:"csn"`
	Members []string `json:"members,omitempty"`
}

// changeEntry is what the state keeps of one entry: its DN and the values
// of its username attribute (none, one, or several, which the sync treats
// as a full sync treats them).
type changeEntry struct {
	DN    string   `json:"dn"`
	Names []string `json:"names,omitempty"`
}

const changeStateVersion = 2

// errRefreshRequired is the directory refusing a sync cookie
// (e-syncRefreshRequired, or an answer that says the same);
// [Authenticator.SyncChanges] then reads the whole directory once.
var errRefreshRequired = errors.New("ldapauth: the directory refused the sync cookie")

// ErrNoContentSync: the directory has no RFC 4533 content synchronisation;
// SyncChanges then runs the full sync, WatchChanges returns it.
var ErrNoContentSync = errors.New("ldapauth: the directory does not offer content synchronisation (RFC 4533; OpenLDAP's syncprov overlay)")

// SyncChanges is [Authenticator.Sync] reading only what changed since the last
// run (RFC 4533; DirSync on Active Directory), the cookie in a [SyncStateStore].
func (a *Authenticator) SyncChanges(ctx context.Context, opts SyncOptions) (*SyncReport, error) {
	return a.syncChanges(ctx, opts, nil)
}

// syncChanges is SyncChanges, with the entryUUIDs a persistent search saw
// deleted (WatchChanges): syncprov advances its contextCSN before it logs a
// deletion, so a refresh run at that moment gets a cookie past the
// deletion without it.
func (a *Authenticator) syncChanges(ctx context.Context, opts SyncOptions, deleted map[string]bool) (report *SyncReport, err error) {
	ctx, obs := a.obs.syncStart(ctx, opts)
	obs.changes = true
	defer obs.end(&report, &err)
	if err := a.cfg.ValidateSync(); err != nil {
		return nil, err
	}
	if a.cfg.Store == nil {
		return nil, configErr("the sync writes into Config.Store, which is nil", envSyncRelations)
	}
	states, ok := a.cfg.Store.(SyncStateStore)
	if !ok {
		return a.fullSync(ctx, opts, "the store keeps no sync state (it does not implement SyncStateStore)")
	}
	raw, err := states.LoadSyncState(ctx)
	if err != nil {
		return nil, &SyncAbortError{Phase: syncReadStore, Err: orCtxError(ctx, &StoreError{Op: "load sync state", Err: err})}
	}
	dirsync, err := a.usesDirSync(ctx)
	if err != nil {
		return nil, &SyncAbortError{Phase: syncBind, Err: err}
	}
	fp := a.changeFingerprint()
	if dirsync {
		fp = dirsyncFingerprintPrefix + fp // Active Directory: dirsync.go
	}
	var st *changeState
	fallback := ""
	switch {
	case len(raw) == 0:
		fallback = "no sync state yet: the first run reads every entry"
	default:
		st = &changeState{}
		switch err := json.Unmarshal(raw, st); {
		case err != nil || st.Version != changeStateVersion:
			st, fallback = nil, "the stored sync state is not one this version reads: every entry is read again"
		case st.Fingerprint != fp:
			st, fallback = nil, "the search settings changed since the stored cookie: every entry is read again"
		case len(st.Cookie) == 0:
			st, fallback = nil, "the stored sync state has no cookie: every entry is read again"
		}
	}
	rep, err := a.changeRun(ctx, opts, states, st, fp, deleted)
	if st != nil && errors.Is(err, errRefreshRequired) {
		why := strings.TrimPrefix(unprefixed(err), unprefixed(errRefreshRequired)+": ")
		fallback = "the directory refused the stored cookie (" + why + "): every entry is read again"
		rep, err = a.changeRun(ctx, opts, states, nil, fp, nil)
	}
	if errors.Is(err, ErrNoContentSync) || errors.Is(err, errNoDirSync) {
		return a.fullSync(ctx, opts, unprefixed(err)+": the full sync runs instead, and keeps no cookie")
	}
	if rep != nil && rep.ChangeSync != nil {
		rep.ChangeSync.Fallback = fallback
	}
	return rep, err
}

// fullSync runs Sync for SyncChanges, saying why in the report.
func (a *Authenticator) fullSync(ctx context.Context, opts SyncOptions, why string) (*SyncReport, error) {
	a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: change-driven sync falls back to the full sync", slog.String("reason", why))
	rep, err := a.runSync(ctx, opts)
	if rep != nil {
		rep.ChangeSync = &ChangeSync{Mode: changeSyncFull, Fallback: why}
	}
	return rep, err
}

// changeFingerprint identifies the search whose cookie the state holds.
func (a *Authenticator) changeFingerprint() string {
	h := sha256.New()
	attrs := a.syncAttrs
	if !a.cfg.usesGroupSyncer() {
		attrs = a.attrs
	}
	filter, _ := userFilter(&a.cfg, a.cfg.SearchFilters, map[string]string{})
	for _, s := range append([]string{a.cfg.SearchBase, filter, a.cfg.usernameAttribute()}, attrs...) {
		h.Write([]byte(strings.ToLower(s)))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// changeRun is one run of SyncChanges: with st, a refresh from its cookie;
// without, a refresh from nothing (every entry).
func (a *Authenticator) changeRun(ctx context.Context, opts SyncOptions, states SyncStateStore, st *changeState, fp string, deleted map[string]bool) (*SyncReport, error) {
	r := a.newSyncRun(opts)
	cr := &changeRead{r: r, old: st, info: &ChangeSync{Mode: changeSyncFullRefresh}, seenDeleted: deleted}
	dirsync := strings.HasPrefix(fp, dirsyncFingerprintPrefix)
	if !dirsync {
		// DirSync keeps its state whole in the SyncStateStore: its runs
		// read every entry's state (dirsync.go), so rows would not pay.
		cr.cs, _ = states.(ChangeStore)
	}
	if st != nil {
		cr.info.Mode = changeSyncIncremental
		cr.sawMemberOf = st.MemberOf
	}
	r.report.ChangeSync = cr.info
	if st != nil && cr.cs != nil {
		// The cost of the change: only the users the changes name are
		// looked up (lookupMerge), once the refresh is read.
		r.lookup = cr.cs
		r.report.StoreUsers, r.memberships = st.StoreUsers, st.Memberships
	} else if err := r.loadStore(ctx); err != nil {
		return nil, err
	}
	read := cr.read
	if dirsync {
		read = cr.readDirSync
	}
	if err := read(ctx); err != nil {
		return nil, err
	}
	if cr.info.Mode == changeSyncIncremental && cr.info.Phase == "present" {
		// The server listed every unchanged entry: this run read every
		// entry's ID and state, the cost of a directory, not of a change.
		a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: the directory answered the sync cookie with every unchanged entry (a present phase); "+
			"give its syncprov overlay a session log (syncprov-sessionlog, olcSpSessionlog) so that incremental runs read only what changed")
	}
	if err := r.loadMissing(ctx); err != nil {
		return nil, r.abort(syncReadStore, err)
	}
	r.plan()
	rep := r.report
	if err := r.guard(); err != nil {
		return rep, err
	}
	if opts.DryRun {
		r.progress(syncDone)
		return rep, nil
	}
	if err := r.apply(ctx); err != nil {
		return rep, err
	}
	rep.Applied = true
	if err := r.relate(ctx); err != nil {
		return rep, err
	}
	if err := cr.save(ctx, states, fp); err != nil {
		return rep, wrap(&StoreError{Op: "save sync state", Err: err}, "the changes are applied; the next run reads them again")
	}
	cr.info.StateSaved = true
	r.progress(syncDone)
	a.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "ldapauth: change-driven sync applied",
		slog.String("mode", cr.info.Mode), slog.Int("changed", cr.info.Changed), slog.Int("deleted", cr.info.Deleted),
		slog.Int("changes", rep.Changes()))
	return rep, nil
}

// save writes the cookie and state after the run's changes are applied:
// with a [ChangeStore], the entries changed and deleted one by one, in one
// call with the state; otherwise the state with every entry, whole.
func (cr *changeRead) save(ctx context.Context, states SyncStateStore, fp string) error {
	rep := cr.r.report
	next := &changeState{Version: changeStateVersion, Fingerprint: fp, Cookie: cr.cookie, Groups: cr.groups, MemberOf: cr.sawMemberOf}
	if cr.cs == nil {
		next.Entries = cr.live
		raw, err := json.Marshal(next)
		if err != nil {
			return err
		}
		return states.SaveSyncState(ctx, raw)
	}
	next.Count = cr.count
	entries := make(map[string][]byte, len(cr.changed)+len(cr.membersRead))
	next.Groups = make(map[string]changeGroup, len(cr.groups))
	for key, g := range cr.groups {
		next.Groups[key] = changeGroup{CSN: g.CSN}
		if cr.membersRead[key] {
			b, err := json.Marshal(g.Members)
			if err != nil {
				return err
			}
			entries[groupRowPrefix+key] = b
		}
	}
	next.StoreUsers = max(0, rep.StoreUsers+len(rep.UsersCreated)-len(rep.UsersRemoved))
	next.Memberships = cr.r.membershipsAfter()
	raw, err := json.Marshal(next)
	if err != nil {
		return err
	}
	for id, e := range cr.changed {
		if entries[id], err = json.Marshal(e); err != nil {
			return err
		}
	}
	return cr.cs.SaveChanges(ctx, raw, entries, cr.dropped, cr.old == nil)
}

// changeRead is the read phase of a change-driven run.
type changeRead struct {
	r    *syncRun
	old  *changeState // nil: a refresh from nothing
	info *ChangeSync
	// cs is the store's ChangeStore, if it is one; with old, the run is
	// in lookup mode: the changed entries wait in buffer until the users
	// they name are looked up (lookupMerge).
	cs     ChangeStore
	buffer []*ldap.Entry
	// count is the number of entries known after the run; dropped the
	// entries known that the run found deleted (ChangeStore).
	count   int
	dropped []string
	// membersRead holds the groups whose members this run read (and a
	// ChangeStore then saves as the group's row).
	membersRead map[string]bool

	cookie  []byte
	changed map[string]changeEntry
	present map[string]bool
	deleted map[string]bool
	// refreshDeletes is the sync done control's flag: the refresh ended
	// with a delete phase.
	refreshDeletes bool
	presentPhase   bool
	live           map[string]changeEntry
	// gone are entries known from the last run that a group change made
	// the run re-read and the search no longer returns.
	gone   map[string]bool
	groups map[string]changeGroup
	filter string
	attrs  []string
	// memberOf holds, by entryUUID, the DNKeys of the memberOf values of
	// the entries read in this run that have memberOf.
	memberOf    map[string]map[string]bool
	sawMemberOf bool
	// seenDeleted are entryUUIDs a persistent search reported deleted.
	seenDeleted map[string]bool
}

// noteMemberOf records the entry's memberOf values, if it has any.
func (cr *changeRead) noteMemberOf(id string, e *ldap.Entry) {
	for _, attr := range e.Attributes {
		if !strings.EqualFold(attr.Name, "memberOf") {
			continue
		}
		if cr.memberOf == nil {
			cr.memberOf = map[string]map[string]bool{}
		}
		keys := map[string]bool{}
		for _, v := range attr.Values {
			keys[DNKey(v)] = true
		}
		cr.memberOf[id] = keys
		cr.sawMemberOf = true
	}
}

// read binds, runs the refresh, completes the view of the directory with
// the entries known and unchanged, then reads the groups as a full sync
// does. It writes nothing.
func (cr *changeRead) read(ctx context.Context) error {
	r := cr.r
	c, err := r.bind(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if err := cr.refresh(ctx, c); err != nil {
		return err
	}
	if err := cr.groupChanges(ctx, c); err != nil {
		return err
	}
	for id := range cr.seenDeleted {
		cr.gone[id] = true
	}
	if cr.r.lookup != nil {
		if err := cr.lookupMerge(ctx); err != nil {
			return err
		}
	} else {
		cr.merge()
	}
	if err := r.placeUnnamed(ctx); err != nil {
		return err
	}
	if err := r.admitMissing(ctx, c); err != nil {
		return err
	}
	r.report.Pages = 1
	r.report.DirectoryUsers = r.dirUsers
	if err := r.readGroups(ctx, c); err != nil {
		return err
	}
	r.resolvePending()
	return r.confirmRemovals(ctx, c)
}

// refresh runs the refreshOnly search and hands each added or modified
// entry to the full sync's entry handling.
func (cr *changeRead) refresh(ctx context.Context, c *conn) error {
	r := cr.r
	r.progress(syncReadUsers)
	req, err := cr.refreshRequest(ctx, c)
	if err != nil {
		return err
	}
	cookie := cr.startRefresh()

	// Cancelling ctx, or silence longer than the receive timeout between
	// two messages, expires the socket: go-ldap then ends the stream.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, c.expire)
	defer stop()
	var idle *time.Timer
	if c.receiveTimeout > 0 {
		idle = time.AfterFunc(c.receiveTimeout, c.expire)
		defer idle.Stop()
	}
	resp := c.l.Syncrepl(sctx, req, 256, ldap.SyncRequestModeRefreshOnly, cookie, false)
	done, err := cr.receive(c, resp, idle)
	if err != nil {
		return err
	}
	if err := cr.refreshEnd(ctx, c, resp.Err(), cookie, done); err != nil {
		return err
	}
	r.prog.Pages = 1
	r.progress(syncReadUsers)
	return nil
}

// refreshRequest is the refresh's search: the login search's filter and the
// sync's attributes, kept for the re-reads of groupChanges.
func (cr *changeRead) refreshRequest(ctx context.Context, c *conn) (*ldap.SearchRequest, error) {
	r, a := cr.r, cr.r.a
	cfg, err := a.searchConfig(ctx, c)
	if err != nil {
		return nil, r.abort(syncReadUsers, err)
	}
	filter, err := userFilter(cfg, a.cfg.SearchFilters, map[string]string{})
	if err != nil {
		return nil, r.abort(syncReadUsers, wrap(err, "search filter builder %s with an empty lookup", formatterName(a.cfg.SearchFilters)))
	}
	attrs := a.syncAttrs
	if r.custom {
		attrs = a.attrs
	}
	cr.filter, cr.attrs = filter, attrs
	return ldap.NewSearchRequest(a.cfg.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, filter, attrs, nil), nil
}

// startRefresh empties the refresh's sets and returns the last run's
// cookie (nil: a refresh from nothing).
func (cr *changeRead) startRefresh() []byte {
	var cookie []byte
	if cr.old != nil {
		cookie = cr.old.Cookie
		cr.cookie = cookie
	}
	cr.changed = map[string]changeEntry{}
	cr.present = map[string]bool{}
	cr.deleted = map[string]bool{}
	return cookie
}

// receive takes the refresh's messages until the stream ends, each entry
// by its sync state, and reports whether the sync done control came.
func (cr *changeRead) receive(c *conn, resp ldap.Response, idle *time.Timer) (done bool, err error) {
	r := cr.r
	for resp.Next() {
		if idle != nil {
			idle.Reset(c.receiveTimeout)
		}
		if e := resp.Entry(); e != nil {
			if err := cr.entry(e, resp.Controls()); err != nil {
				c.broken = true
				if errors.Is(err, ErrNoContentSync) {
					return false, err
				}
				return false, r.abort(syncReadUsers, err)
			}
			r.prog.Users++
			if r.prog.Users%1000 == 0 {
				r.progress(syncReadUsers)
			}
			continue
		}
		if resp.Referral() != "" {
			continue // not chased, as in the full sync
		}
		done = cr.control(resp.Controls()) || done
	}
	return done, nil
}

// refreshEnd judges how the refresh's stream ended (err, the stream's
// error): refused for its cookie, unsupported, failed, or cut short.
func (cr *changeRead) refreshEnd(ctx context.Context, c *conn, err error, cookie []byte, done bool) error {
	r := cr.r
	switch {
	case ctx.Err() != nil:
		c.broken = true
		return r.abort(syncReadUsers, ctxError(ctx))
	case err != nil && ldap.IsErrorWithCode(err, ldap.LDAPResultSyncRefreshRequired):
		return fmt.Errorf("%w: e-syncRefreshRequired", errRefreshRequired)
	case err != nil && cookie != nil && isCookieRefusal(err):
		return fmt.Errorf("%w: %s", errRefreshRequired, ldapMessage(err))
	case err != nil && ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
		return ErrNoContentSync
	case err != nil:
		c.broken = c.broken || isNetworkError(err)
		r.unpaged = true // the refresh is one search: no paging hint
		return r.readError(ctx, classifyNetwork(err))
	case !done:
		c.broken = true
		return r.abort(syncReadUsers, errors.New("the refresh ended without its sync done control: the read is incomplete"))
	}
	return nil
}

// isCookieRefusal reports whether a refresh with a cookie was refused for
// its cookie: OpenLDAP answers unwillingToPerform ("consumer state is
// newer than provider!") for a cookie ahead of the directory (restored from
// a backup), and a malformed cookie may be a protocol error. Either way,
// the run without the cookie, which follows, reads every entry; if that
// fails too, its error is the run's.
func isCookieRefusal(err error) bool {
	return ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) || ldap.IsErrorWithCode(err, ldap.LDAPResultProtocolError)
}

// ldapMessage is the server's diagnostic message, or err's text.
func ldapMessage(err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.Err != nil {
		return fmt.Sprintf("%s: %s", ldap.LDAPResultCodeMap[le.ResultCode], le.Err)
	}
	return unprefixed(err)
}

// entry handles one entry of the refresh, by its sync state control.
func (cr *changeRead) entry(e *ldap.Entry, controls []ldap.Control) error {
	state, ok := ldap.FindControl(controls, ldap.ControlTypeSyncState).(*ldap.ControlSyncState)
	if !ok {
		// Samba accepts the critical sync request control and answers a
		// plain search: it offers no content synchronisation.
		return fmt.Errorf("%w: the entry %q came without a sync state control", ErrNoContentSync, e.DN)
	}
	if len(state.Cookie) > 0 {
		cr.cookie = state.Cookie
	}
	id := state.EntryUUID.String()
	switch state.State {
	case ldap.SyncStatePresent:
		cr.present[id] = true
	case ldap.SyncStateDelete:
		cr.deleted[id] = true
	case ldap.SyncStateAdd, ldap.SyncStateModify:
		var names []string
		for _, v := range e.GetEqualFoldAttributeValues(cr.r.a.cfg.usernameAttribute()) {
			if v != "" {
				names = append(names, v)
			}
		}
		cr.changed[id] = changeEntry{DN: e.DN, Names: names}
		cr.noteMemberOf(id, e)
		delete(cr.deleted, id)
		cr.handle(e)
	default:
		return fmt.Errorf("the entry %q came with an unknown sync state %d", e.DN, state.State)
	}
	return nil
}

// control takes the cookie and the phases from the intermediate messages
// and the sync done control, and reports whether it was the latter.
func (cr *changeRead) control(controls []ldap.Control) (done bool) {
	for _, ctrl := range controls {
		switch ctrl := ctrl.(type) {
		case *ldap.ControlSyncDone:
			if len(ctrl.Cookie) > 0 {
				cr.cookie = ctrl.Cookie
			}
			cr.refreshDeletes = ctrl.RefreshDeletes
			done = true
		case *ldap.ControlSyncInfo:
			switch {
			case ctrl.NewCookie != nil:
				cr.setCookie(ctrl.NewCookie.Cookie)
			case ctrl.RefreshDelete != nil:
				cr.setCookie(ctrl.RefreshDelete.Cookie)
			case ctrl.RefreshPresent != nil:
				cr.setCookie(ctrl.RefreshPresent.Cookie)
				cr.presentPhase = true
			case ctrl.SyncIdSet != nil:
				cr.setCookie(ctrl.SyncIdSet.Cookie)
				for _, id := range ctrl.SyncIdSet.SyncUUIDs {
					if ctrl.SyncIdSet.RefreshDeletes {
						cr.deleted[id.String()] = true
					} else {
						cr.present[id.String()] = true
					}
				}
			}
		}
	}
	return done
}

func (cr *changeRead) setCookie(c []byte) {
	if len(c) > 0 {
		cr.cookie = c
	}
}

// merge makes the directory's view after the refresh: the entries changed,
// and those known from the last run that are unchanged (present, in a
// present phase; not deleted, in a delete phase). Each unchanged entry is
// counted as read, as a full sync would have read it.
func (cr *changeRead) merge() {
	r := cr.r
	cr.live = make(map[string]changeEntry, len(cr.changed))
	if cr.old != nil {
		present := cr.presentPhase || len(cr.present) > 0 || !cr.refreshDeletes
		cr.info.Phase = "delete"
		if present {
			cr.info.Phase = "present"
		}
		for id, e := range cr.old.Entries {
			_, changed := cr.changed[id]
			switch {
			case changed:
			case cr.gone[id], present && !cr.present[id], !present && cr.deleted[id]:
				cr.info.Deleted++
			default:
				cr.live[id] = e
			}
		}
		for _, id := range slices.Sorted(maps.Keys(cr.live)) {
			e := cr.live[id]
			switch len(e.Names) {
			case 0:
				r.unnamed = append(r.unnamed, e.DN)
			case 1:
				r.markPresent(&ldap.Entry{DN: e.DN}, e.Names[0])
			default:
				r.multiValued(e.DN, e.Names)
			}
		}
	}
	maps.Copy(cr.live, cr.changed)
	cr.info.Changed = len(cr.changed)
	cr.count = len(cr.live)
}

// handle hands a changed entry to the full sync's entry handling, or, in
// lookup mode, keeps it until the users it names are looked up.
func (cr *changeRead) handle(e *ldap.Entry) {
	if cr.r.lookup != nil {
		cr.buffer = append(cr.buffer, e)
		return
	}
	cr.r.entry(e)
}

// loadEntries reads what the store keeps of the entries ids (every entry
// for ids nil).
func (cr *changeRead) loadEntries(ctx context.Context, ids []string) (map[string]changeEntry, error) {
	raw, err := cr.cs.LoadEntries(ctx, ids)
	if err != nil {
		return nil, cr.r.storeError(ctx, "load sync entries", err)
	}
	out := make(map[string]changeEntry, len(raw))
	for id, b := range raw {
		if strings.HasPrefix(id, groupRowPrefix) {
			continue
		}
		var e changeEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, cr.r.abort(syncReadStore, fmt.Errorf("the sync state of entry %s does not decode: %w", id, err))
		}
		out[id] = e
	}
	return out, nil
}

// groupRowPrefix starts the ID of a group's row in a ChangeStore (its
// members, by DNKey): no entryUUID starts so.
const groupRowPrefix = "group:"

// groupMembers reads the members the store keeps for the group key.
func (cr *changeRead) groupMembers(ctx context.Context, key string) ([]string, error) {
	raw, err := cr.cs.LoadEntries(ctx, []string{groupRowPrefix + key})
	if err != nil {
		return nil, cr.r.storeError(ctx, "load sync entries", err)
	}
	var members []string
	if b, ok := raw[groupRowPrefix+key]; ok {
		if err := json.Unmarshal(b, &members); err != nil {
			return nil, cr.r.abort(syncReadStore, fmt.Errorf("the sync state of group %s does not decode: %w", key, err))
		}
	}
	return members, nil
}

// allEntries loads every entry's state into cr.old.Entries, for what needs
// them all: a refresh with a present phase (the entries not listed are
// gone) and a group change whose members are known by DN or name.
func (cr *changeRead) allEntries(ctx context.Context) error {
	if cr.old.Entries != nil {
		return nil
	}
	all, err := cr.loadEntries(ctx, nil)
	if err != nil {
		return err
	}
	cr.old.Entries = all
	return nil
}

// lookupMerge is merge at the cost of the change ([ChangeStore]): it reads
// the state of the entries changed or deleted only (every entry's after a
// present phase), looks up the users they name, then hands the changed
// entries to the full sync's entry handling. The unchanged entries count
// as read, unchanged; their users are neither looked up nor touched, which
// is what a full sync would do with them.
func (cr *changeRead) lookupMerge(ctx context.Context) error {
	r := cr.r
	present := cr.presentPhase || len(cr.present) > 0 || !cr.refreshDeletes
	cr.info.Phase = "delete"
	if present {
		cr.info.Phase = "present"
		if err := cr.allEntries(ctx); err != nil {
			return err
		}
	}
	var old map[string]changeEntry
	count := cr.old.Count
	if cr.old.Entries != nil {
		old, count = cr.old.Entries, len(cr.old.Entries)
	} else {
		ids := make([]string, 0, len(cr.changed)+len(cr.deleted)+len(cr.gone))
		for _, set := range []map[string]bool{cr.deleted, cr.gone} {
			for id := range set {
				ids = append(ids, id)
			}
		}
		for id := range cr.changed {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		var err error
		if old, err = cr.loadEntries(ctx, slices.Compact(ids)); err != nil {
			return err
		}
	}
	var names []string
	knownChanged := 0
	for _, id := range slices.Sorted(maps.Keys(old)) {
		e := old[id]
		_, changed := cr.changed[id]
		switch {
		case changed:
			knownChanged++
		case cr.gone[id], present && !cr.present[id], !present && cr.deleted[id]:
			cr.dropped = append(cr.dropped, id)
		default:
			continue
		}
		names = append(names, e.Names...)
	}
	for _, e := range cr.changed {
		names = append(names, e.Names...)
	}
	if err := r.lookupUsers(ctx, cr.cs, names); err != nil {
		return err
	}
	for _, e := range cr.buffer {
		r.entry(e)
	}
	cr.buffer = nil
	unchanged := count - len(cr.dropped) - knownChanged
	r.dirUsers += unchanged
	cr.count = unchanged + len(cr.changed)
	cr.info.Deleted = len(cr.dropped)
	cr.info.Changed = len(cr.changed)
	return nil
}

// writeText writes the change-driven run's line of the text report.
func (cs *ChangeSync) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "change-driven sync (%s): %d entries changed, %d deleted", cs.Mode, cs.Changed, cs.Deleted)
	if cs.Phase != "" {
		fmt.Fprintf(b, " (%s phase)", cs.Phase)
	}
	if !cs.StateSaved {
		b.WriteString(", cookie not saved")
	}
	b.WriteString("\n")
	if cs.Fallback != "" {
		fmt.Fprintf(b, "  read in full: %s\n", cs.Fallback)
	}
}

// groupChanges reads the synced groups and the login group, and re-reads,
// with the login search's filter, the users who joined or left a group
// whose entry changed since the last run: the memberof overlay's writes to
// memberOf change no entryCSN, so the refresh does not return them. A
// re-read user is handled as a changed entry; one the search no longer
// returns (it left the login group) as a deleted one. One base search per
// group (two when it changed), one per user who joined or left.
func (cr *changeRead) groupChanges(ctx context.Context, c *conn) error {
	cr.groups = map[string]changeGroup{}
	cr.membersRead = map[string]bool{}
	cr.gone = map[string]bool{}
	affected := map[string][]string{} // member key -> the changed groups it joined or left
	olds := map[string]changeGroup{}
	for _, g := range cr.groupsToRead() {
		if err := cr.groupChange(ctx, c, g, affected, olds); err != nil {
			return err
		}
	}
	if len(affected) == 0 {
		return nil
	}
	if cr.r.lookup != nil {
		// Members are known by DN or name, not by entryUUID.
		if err := cr.allEntries(ctx); err != nil {
			return err
		}
	}
	unsettled, err := cr.reread(ctx, c, affected)
	if err != nil {
		return err
	}
	// A group whose member values and its members' memberOf disagree is
	// caught between the write to the group and the memberof overlay's
	// write to the member: its last state is kept, so that the next run
	// compares it again and reads those members again.
	for key := range unsettled {
		cr.groups[key] = olds[key]
		delete(cr.membersRead, key)
	}
	return nil
}

// groupsToRead are the synced groups and the login group, once each.
func (cr *changeRead) groupsToRead() []groupRef {
	r := cr.r
	refs := make([]groupRef, 0, len(r.groups)+1)
	for _, g := range r.groups {
		refs = append(refs, g.ref)
	}
	if lg := r.a.loginGroup; lg.dn != "" && !slices.ContainsFunc(refs, func(g groupRef) bool { return g.key == lg.key }) {
		refs = append(refs, lg)
	}
	return refs
}

// groupChange reads group g's entryCSN and, when it changed since the last
// run, its members; it adds to affected the members who joined or left it,
// and keeps in olds its last state.
func (cr *changeRead) groupChange(ctx context.Context, c *conn, g groupRef, affected map[string][]string, olds map[string]changeGroup) error {
	var old changeGroup
	known := false
	if cr.old != nil {
		old, known = cr.old.Groups[g.key]
	}
	csn, _, err := cr.readGroup(ctx, c, g.dn, false)
	if err != nil {
		return err
	}
	if known && csn == old.CSN && csn != "" {
		cr.groups[g.key] = old
		return nil
	}
	csn, members, err := cr.readGroup(ctx, c, g.dn, true)
	if err != nil {
		return err
	}
	cr.groups[g.key] = changeGroup{CSN: csn, Members: members}
	cr.membersRead[g.key] = true
	if cr.old == nil {
		return nil // a full refresh reads every user anyway
	}
	if known && cr.cs != nil {
		// A ChangeStore keeps a group's members as a row of their own,
		// read only when the group changed.
		if old.Members, err = cr.groupMembers(ctx, g.key); err != nil {
			return err
		}
	}
	olds[g.key] = old
	memberMoves(affected, g.key, old.Members, members)
	return nil
}

// memberMoves adds group key to affected for each member of was or now
// that is not in both: those who joined or left it.
func memberMoves(affected map[string][]string, key string, was, now []string) {
	left := map[string]bool{}
	for _, m := range was {
		left[m] = true
	}
	for _, m := range now {
		if !left[m] {
			affected[m] = append(affected[m], key)
		}
		delete(left, m)
	}
	for m := range left {
		affected[m] = append(affected[m], key)
	}
}

// disagree returns the changed groups, of those member m joined or left,
// whose member values disagree with memberOf (the DNKeys of the member
// entry's memberOf values). Without memberOf in the directory, or for a
// memberUid member, there is nothing to disagree with.
func (cr *changeRead) disagree(memberOf map[string]bool, m string, groups []string) []string {
	if !cr.sawMemberOf || strings.HasPrefix(m, "uid:") {
		return nil
	}
	var out []string
	for _, key := range groups {
		listed := slices.Contains(cr.groups[key].Members, m)
		if listed != memberOf[key] {
			out = append(out, key)
		}
	}
	return out
}

// readGroup reads the group's entryCSN and, with members, its members. A
// group that is gone, or hidden, has no members and no CSN; whether it is
// gone is the full sync's readGroups' to prove.
func (cr *changeRead) readGroup(ctx context.Context, c *conn, dn string, members bool) (string, []string, error) {
	attrs := []string{"entryCSN"}
	if members {
		attrs = append(attrs, "member", "uniqueMember", "memberUid")
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", attrs, nil))
	switch {
	case err != nil && ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return "", nil, nil
	case err != nil:
		return "", nil, cr.r.abort(syncReadGroups, orCtxError(ctx, classifyNetwork(err)))
	case len(res.Entries) == 0:
		return "", nil, nil
	}
	e := res.Entries[0]
	var out []string
	for _, attr := range e.Attributes {
		switch {
		case strings.EqualFold(attr.Name, "member"), strings.EqualFold(attr.Name, "uniqueMember"):
			for _, v := range attr.Values {
				out = append(out, DNKey(v))
			}
		case strings.EqualFold(attr.Name, "memberUid"):
			for _, v := range attr.Values {
				out = append(out, "uid:"+normUser(v))
			}
		}
	}
	slices.Sort(out)
	return e.GetAttributeValue("entryCSN"), slices.Compact(out), nil
}

// reread reads again, by DN with the login search's filter, the users who
// joined or left a changed group, unless the refresh returned them.
func (cr *changeRead) reread(ctx context.Context, c *conn, affected map[string][]string) (unsettled map[string]bool, err error) {
	unsettled = map[string]bool{}
	known := cr.knownEntries()
	attrs := append(slices.Clone(cr.attrs), "entryUUID")
	for _, m := range slices.Sorted(maps.Keys(affected)) {
		keys, err := cr.rereadMember(ctx, c, known, attrs, m, affected[m])
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			unsettled[k] = true
		}
	}
	return unsettled, nil
}

// entryIndex finds the entries known, from the last run or this one's
// refresh, by DN and by username.
type entryIndex struct {
	byDN   map[string]string // DNKey -> entryUUID, of the entries known
	byName map[string]string // normUser -> DNKey
}

// knownEntries indexes the last run's entries and the refresh's changed
// ones.
func (cr *changeRead) knownEntries() entryIndex {
	known := entryIndex{byDN: map[string]string{}, byName: map[string]string{}}
	for id, e := range cr.old.Entries {
		known.add(id, e)
	}
	for id, e := range cr.changed {
		known.add(id, e)
	}
	return known
}

// add indexes entry e, whose entryUUID is id.
func (x entryIndex) add(id string, e changeEntry) {
	x.byDN[DNKey(e.DN)] = id
	for _, n := range e.Names {
		x.byName[normUser(n)] = DNKey(e.DN)
	}
}

// rereadMember reads again member m, who joined or left groups, unless the
// refresh returned it, and returns those of groups whose member values
// disagree with its memberOf.
func (cr *changeRead) rereadMember(ctx context.Context, c *conn, known entryIndex, attrs []string, m string, groups []string) ([]string, error) {
	dn, ok := strings.CutPrefix(m, "uid:")
	if ok {
		if dn = known.byName[dn]; dn == "" {
			return nil, nil // a name no entry known has: nothing to re-read
		}
	}
	if id := known.byDN[dn]; id != "" {
		if _, changed := cr.changed[id]; changed {
			return cr.disagree(cr.memberOf[id], m, groups), nil
		}
	}
	res, err := c.Search(ctx, ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, cr.filter, attrs, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, cr.r.abort(syncReadUsers, orCtxError(ctx, classifyNetwork(err)))
	}
	if err != nil || len(res.Entries) == 0 {
		return cr.outsideSearch(ctx, c, known, dn, m, groups)
	}
	return cr.rereadEntry(res.Entries[0], known, m, groups)
}

// outsideSearch handles member m, whose entry dn the login search no longer
// returns: a known entry is gone, and the groups that disagree with its
// memberOf, if it exists, are returned.
func (cr *changeRead) outsideSearch(ctx context.Context, c *conn, known entryIndex, dn, m string, groups []string) ([]string, error) {
	if id := known.byDN[dn]; id != "" {
		cr.gone[id] = true
	}
	// Outside the login search, perhaps only until the memberof
	// overlay writes its memberOf: read that to know.
	memberOf, exists, err := cr.readMemberOf(ctx, c, dn)
	if err != nil || !exists {
		return nil, err
	}
	return cr.disagree(memberOf, m, groups), nil
}

// rereadEntry handles member m's entry e, read again, as a changed entry, and
// returns the groups that disagree with its memberOf.
func (cr *changeRead) rereadEntry(e *ldap.Entry, known entryIndex, m string, groups []string) ([]string, error) {
	r := cr.r
	id := e.GetAttributeValue("entryUUID")
	if id == "" {
		return nil, r.abort(syncReadUsers, fmt.Errorf("the entry %q came without entryUUID: the sync account must read it", e.DN))
	}
	if old := known.byDN[DNKey(e.DN)]; old != "" && old != id {
		cr.gone[old] = true
	}
	var names []string
	for _, v := range e.GetEqualFoldAttributeValues(r.a.cfg.usernameAttribute()) {
		if v != "" {
			names = append(names, v)
		}
	}
	cr.changed[id] = changeEntry{DN: e.DN, Names: names}
	cr.noteMemberOf(id, e)
	keys := cr.disagree(cr.memberOf[id], m, groups)
	cr.handle(e)
	r.prog.Users++
	return keys, nil
}

// readMemberOf reads the DNKeys of the entry's memberOf values; exists is
// false when the entry is gone or hidden.
func (cr *changeRead) readMemberOf(ctx context.Context, c *conn, dn string) (keys map[string]bool, exists bool, err error) {
	res, err := c.Search(ctx, ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"memberOf"}, nil))
	switch {
	case err != nil && !isNetworkError(err) && ctx.Err() == nil:
		return nil, false, nil // noSuchObject, or refused: gone or hidden
	case err != nil:
		return nil, false, cr.r.abort(syncReadUsers, orCtxError(ctx, classifyNetwork(err)))
	case len(res.Entries) == 0:
		return nil, false, nil
	}
	keys = map[string]bool{}
	for _, v := range res.Entries[0].GetEqualFoldAttributeValues("memberOf") {
		keys[DNKey(v)] = true
	}
	return keys, true, nil
}
