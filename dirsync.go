package ldapauth

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Active Directory's change tracking for SyncChanges and WatchChanges:
// the DirSync control (MS-ADTS 3.1.1.3.4.1.3, LDAP_SERVER_DIRSYNC_OID
// 1.2.840.113556.1.4.841). DirSync says which objects changed since a
// cookie and returns only their changed attributes, so a run reads each
// changed user entry whole with the login search (a base search on its DN
// with the login filter): the login group, disabled accounts, computer
// accounts and the mapped fields follow exactly the full sync's rules.
// Deleted objects come back as tombstones (isDeleted TRUE, under
// CN=Deleted Objects) with their objectGUID, which the state maps to the
// stored user, as the RFC 4533 path maps an entryUUID.

// dirsyncFlags asks for the changed values of linked attributes (member)
// rather than all of them: added values come as member;range=1-1, removed
// ones as member;range=0-0. Without LDAP_DIRSYNC_OBJECT_SECURITY, so
// deletions are returned, the sync account needs the "Replicating
// Directory Changes" right.
const dirsyncFlags = ldap.DirSyncIncrementalValues

// dirsyncFingerprintPrefix marks a state made by DirSync: its cookie and
// ids (objectGUIDs) mean nothing to the RFC 4533 path, and the reverse.
const dirsyncFingerprintPrefix = "dirsync:"

// errNoDirSync is a directory taken for Active Directory that refused the
// DirSync control; SyncChanges then runs the full sync.
var errNoDirSync = errors.New("ldapauth: the directory refused the DirSync control (1.2.840.113556.1.4.841)")

// rightReplicatingChanges names the extended right DirSync needs.
const rightReplicatingChanges = `"Replicating Directory Changes"`

// usesDirSync reports whether change-driven runs use DirSync: the
// directory is Active Directory, configured or read from the root DSE (on
// a connection of its own, once per Authenticator).
func (a *Authenticator) usesDirSync(ctx context.Context) (bool, error) {
	d := a.knownDirectoryType()
	if d == directoryAuto {
		c, err := a.syncConn(ctx)
		if err != nil {
			return false, err
		}
		defer c.close()
		if d, err = a.directoryType(ctx, c); err != nil {
			return false, err
		}
	}
	return d == DirectoryActiveDirectory, nil
}

// guidKey is the state's id of an entry: its objectGUID in hex, or "".
func guidKey(e *ldap.Entry) string {
	return hex.EncodeToString(e.GetEqualFoldRawAttributeValue("objectGUID"))
}

// dirsyncRequest is the DirSync search: the user objects and the groups
// (tombstones keep objectClass) of the naming context, every attribute
// (any change of a user's entry makes the run read it again).
func (a *Authenticator) dirsyncRequest(base string, cookie []byte) *ldap.SearchRequest {
	filter := "(|(objectClass=" + ldap.EscapeFilter(a.cfg.ObjectClass) + ")(objectClass=group))"
	return ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, nil,
		[]ldap.Control{ldap.NewRequestControlDirSync(dirsyncFlags, 0, cookie)})
}

// dirsyncBase is the naming context that holds the search base: DirSync
// takes only the head of a naming context as its base.
func (a *Authenticator) dirsyncBase(ctx context.Context, c *conn) (string, error) {
	res, err := c.Search(ctx, ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"namingContexts", "defaultNamingContext"}, nil))
	if err != nil {
		return "", wrap(orCtxError(ctx, classifyNetwork(err)), "reading the root DSE's naming contexts")
	}
	base := DNKey(a.cfg.SearchBase)
	best, def := "", ""
	if len(res.Entries) > 0 {
		e := res.Entries[0]
		def = e.GetEqualFoldAttributeValue("defaultNamingContext")
		for _, nc := range e.GetEqualFoldAttributeValues("namingContexts") {
			k := DNKey(nc)
			if (base == k || strings.HasSuffix(base, ","+k)) && len(nc) > len(best) {
				best = nc
			}
		}
	}
	return cmp.Or(best, def, a.cfg.SearchBase), nil
}

// dirsync runs the DirSync search from cookie to the end of the changes
// (the server says "more" in the response control's flags), handing each
// entry to each, and returns the new cookie. A refused cookie is
// errRefreshRequired, a refused control errNoDirSync, a sync account
// without the right a *SyncAbortError naming it.
func (a *Authenticator) dirsync(ctx context.Context, dir Directory, account, base string, cookie []byte, each func(*ldap.Entry)) ([]byte, error) {
	for {
		res, err := dir.Search(ctx, a.dirsyncRequest(base, cookie))
		if err != nil {
			return nil, dirsyncError(ctx, account, base, cookie != nil, err)
		}
		ctrl, ok := ldap.FindControl(res.Controls, ldap.ControlTypeDirSync).(*ldap.ControlDirSync)
		if !ok {
			return nil, &SyncAbortError{Phase: syncReadUsers, Err: fmt.Errorf("%w: the answer came without its DirSync control", errNoDirSync)}
		}
		for _, e := range res.Entries {
			each(e)
		}
		if len(ctrl.Cookie) > 0 {
			cookie = ctrl.Cookie
		}
		if ctrl.Flags == 0 || len(ctrl.Cookie) == 0 {
			return cookie, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, &SyncAbortError{Phase: syncReadUsers, Err: ctxError(ctx)}
		}
	}
}

// dirsyncError says what a refused DirSync search means.
func dirsyncError(ctx context.Context, account, base string, withCookie bool, err error) error {
	switch {
	case ctx.Err() != nil:
		return &SyncAbortError{Phase: syncReadUsers, Err: ctxError(ctx)}
	case isNetworkError(err):
		return &SyncAbortError{Phase: syncReadUsers, Err: classifyNetwork(err)}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights):
		return &SyncAbortError{Phase: syncReadUsers,
			Err: fmt.Errorf("the sync account %s may not read changes with DirSync on %s: it lacks the %s right (%s)", account, base, rightReplicatingChanges, ldapMessage(err)),
			Hint: "grant " + account + " the " + rightReplicatingChanges + " right on " + base +
				" (see docs/active-directory.md), or run the full sync (Sync) instead of SyncChanges",
			Variables: []string{envSyncUsername}}
	case withCookie && (ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultProtocolError) || ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultOperationsError) || ldap.IsErrorWithCode(err, ldap.LDAPResultOther)):
		// Samba answers unavailableCriticalExtension for a cookie it
		// cannot unmarshal; the run without a cookie, which follows,
		// tells a refused control from a refused cookie.
		return fmt.Errorf("%w: %s", errRefreshRequired, ldapMessage(err))
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
		return fmt.Errorf("%w: %s", errNoDirSync, ldapMessage(err))
	}
	return &SyncAbortError{Phase: syncReadUsers, Err: fmt.Errorf("DirSync on %s: %w", base, err)}
}

// dirsyncNow returns a DirSync cookie for the directory as it is now: a
// DirSync search without cookie, with a filter no object matches, so that
// nothing is sent.
func (a *Authenticator) dirsyncNow(ctx context.Context, c *conn, base string) ([]byte, error) {
	req := a.dirsyncRequest(base, nil)
	req.Filter, req.Attributes = `(objectGUID=\00)`, []string{"objectGUID"}
	var cookie []byte
	for {
		res, err := c.Search(ctx, req)
		if err != nil {
			return nil, dirsyncError(ctx, c.as.name, base, false, err)
		}
		ctrl, ok := ldap.FindControl(res.Controls, ldap.ControlTypeDirSync).(*ldap.ControlDirSync)
		if !ok || len(ctrl.Cookie) == 0 {
			return nil, fmt.Errorf("%w: the answer came without a DirSync cookie", errNoDirSync)
		}
		cookie = ctrl.Cookie
		if ctrl.Flags == 0 {
			return cookie, nil
		}
		// More to walk (Windows walks the whole naming context in
		// batches even when nothing matches).
		req.Controls = []ldap.Control{ldap.NewRequestControlDirSync(dirsyncFlags, 0, cookie)}
	}
}

// readDirSync is the read of a change-driven run on Active Directory:
// without a stored state, a full refresh; with one, the changes since its
// cookie.
func (cr *changeRead) readDirSync(ctx context.Context) error {
	if cr.old == nil {
		return cr.dirsyncRefresh(ctx)
	}
	return cr.dirsyncChanges(ctx)
}

// dirsyncRefresh takes a DirSync cookie for now (with a filter no object
// matches, so nothing is sent), then reads as the full sync reads, keeping
// each entry's objectGUID. A change made between the two is read again by
// the next run: every store write is idempotent.
func (cr *changeRead) dirsyncRefresh(ctx context.Context) error {
	r, a := cr.r, cr.r.a
	c, err := r.bind(ctx)
	if err != nil {
		return err
	}
	base, err := a.dirsyncBase(ctx, c)
	if err == nil {
		cr.cookie, err = a.dirsyncNow(ctx, c, base)
	}
	c.close()
	if err != nil {
		return cr.abortRead(err)
	}
	cr.changed = map[string]changeEntry{}
	r.extraAttrs = []string{"objectGUID"}
	r.onEntry = func(e *ldap.Entry) {
		id := guidKey(e)
		e.Attributes = slices.DeleteFunc(e.Attributes, func(at *ldap.EntryAttribute) bool { return strings.EqualFold(at.Name, "objectGUID") })
		if id == "" {
			return // placed by DN, as the full sync does; not kept
		}
		cr.changed[id] = changeEntry{DN: e.DN, Names: usernames(e, a.cfg.usernameAttribute())}
	}
	if err := r.read(ctx); err != nil {
		return err
	}
	cr.merge()
	return nil
}

// abortRead makes err a SyncAbortError unless it says something the
// caller acts on (a refused cookie or control) or is one already.
func (cr *changeRead) abortRead(err error) error {
	var abort *SyncAbortError
	if errors.Is(err, errRefreshRequired) || errors.Is(err, errNoDirSync) || errors.As(err, &abort) {
		return err
	}
	return cr.r.abort(syncReadUsers, err)
}

// usernames are the entry's non-empty values of attr.
func usernames(e *ldap.Entry, attr string) []string {
	var names []string
	for _, v := range e.GetEqualFoldAttributeValues(attr) {
		if v != "" {
			names = append(names, v)
		}
	}
	return names
}

// dirsyncChanges reads the changes since the stored cookie: the objects
// DirSync returns, each user among them read again whole with the login
// search, deletions mapped through the state, and, for each group whose
// members changed, the members who joined or left read again (with nested
// groups, the users under a group that joined or left).
func (cr *changeRead) dirsyncChanges(ctx context.Context) error {
	r := cr.r
	r.progress(syncReadUsers)
	c, err := r.bind(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	base, err := cr.dirsyncPrepare(ctx, c)
	if err != nil {
		return err
	}
	cr.changed = map[string]changeEntry{}
	cr.deleted = map[string]bool{}
	cr.present = map[string]bool{}
	cr.gone = map[string]bool{}
	cr.refreshDeletes = true

	byDN := map[string]string{} // DNKey -> id, of the entries known
	for id, e := range cr.old.Entries {
		byDN[DNKey(e.DN)] = id
	}
	delta, err := cr.readDirSyncDelta(ctx, c, base)
	if err != nil {
		return err
	}
	read := map[string]bool{} // DNKey of the entries read again
	if err := cr.rereadObjects(ctx, c, delta, byDN, read); err != nil {
		return err
	}
	if err := cr.rereadMembers(ctx, c, delta.members, byDN, read); err != nil {
		return err
	}
	for id := range cr.changed {
		delete(cr.gone, id)
		delete(cr.deleted, id)
	}
	cr.merge()
	cr.info.Phase = "dirsync"
	if err := r.placeUnnamed(ctx); err != nil {
		return err
	}
	if err := r.admitMissing(ctx, c); err != nil {
		return err
	}
	r.prog.Pages = 1
	r.progress(syncReadUsers)
	r.report.Pages = 1
	r.report.DirectoryUsers = r.dirUsers
	if err := r.readGroups(ctx, c); err != nil {
		return err
	}
	r.resolvePending()
	return r.confirmRemovals(ctx, c)
}

// dirsyncPrepare sets the login search's filter and attributes with which
// the run reads entries again, and returns the DirSync base.
func (cr *changeRead) dirsyncPrepare(ctx context.Context, c *conn) (string, error) {
	r, a := cr.r, cr.r.a
	cfg, err := a.searchConfig(ctx, c)
	if err != nil {
		return "", r.abort(syncReadUsers, err)
	}
	if cfg, err = r.nestedLoginTerm(ctx, c, cfg); err != nil {
		return "", r.abort(syncReadUsers, orCtxError(ctx, err))
	}
	filter, err := userFilter(cfg, a.cfg.SearchFilters, map[string]string{})
	if err != nil {
		return "", r.abort(syncReadUsers, wrap(err, "search filter builder %s with an empty lookup", formatterName(a.cfg.SearchFilters)))
	}
	cr.filter = filter
	cr.attrs = append(slices.Clone(a.syncAttrs), "objectGUID")
	if r.custom {
		cr.attrs = append(slices.Clone(a.attrs), "objectGUID")
	}
	base, err := a.dirsyncBase(ctx, c)
	if err != nil {
		return "", r.abort(syncReadUsers, err)
	}
	return base, nil
}

// readDirSyncDelta reads what DirSync returns since the stored cookie,
// keeps the new cookie and takes the tombstones as deleted and the objects
// moved out of the search base as gone.
func (cr *changeRead) readDirSyncDelta(ctx context.Context, c *conn, base string) (*dirsyncDelta, error) {
	delta, cookie, err := cr.r.a.readDelta(ctx, c, c.as.name, base, cr.old.Cookie)
	if err != nil {
		return nil, cr.abortRead(err)
	}
	cr.r.prog.Users += delta.entries
	cr.cookie = cookie
	maps.Copy(cr.deleted, delta.deleted)
	maps.Copy(cr.gone, delta.outside)
	return delta, nil
}

// rereadObjects reads again, in the order DirSync returned them, the
// objects of delta; a known entry the login search no longer returns is
// gone.
func (cr *changeRead) rereadObjects(ctx context.Context, c *conn, delta *dirsyncDelta, byDN map[string]string, read map[string]bool) error {
	for _, id := range delta.order {
		dn, ok := delta.objects[id]
		if !ok {
			continue
		}
		read[DNKey(dn)] = true
		found, err := cr.rereadDirSync(ctx, c, dn, byDN)
		if err != nil {
			return err
		}
		if !found && cr.old.Entries[id].DN != "" {
			cr.gone[id] = true
		}
	}
	return nil
}

// rereadMembers reads again the members under the search base who joined
// or left a group and were not read yet; with nested groups, a member that
// is not a user (a group) has the users under it read again.
func (cr *changeRead) rereadMembers(ctx context.Context, c *conn, memberDNs []string, byDN map[string]string, read map[string]bool) error {
	nested := cr.r.a.cfg.NestedGroups != nestedGroupsOff
	for _, dn := range memberDNs {
		k := DNKey(dn)
		if read[k] || !cr.r.a.underSearchBase(dn) {
			continue
		}
		read[k] = true
		found, err := cr.rereadDirSync(ctx, c, dn, byDN)
		if err != nil {
			return err
		}
		if found || byDN[k] != "" || !nested {
			continue
		}
		if err := cr.rereadUsersUnder(ctx, c, dn, byDN, read); err != nil {
			return err
		}
	}
	return nil
}

// rereadUsersUnder reads again the users under group not read yet: a
// group that joined or left a group, with nested groups, may have given
// or taken the login group or a synced group from the users under it. The
// DC resolves the nesting (in-chain rule).
func (cr *changeRead) rereadUsersUnder(ctx context.Context, c *conn, group string, byDN map[string]string, read map[string]bool) error {
	users, err := cr.usersUnder(ctx, c, group)
	if err != nil {
		return err
	}
	for _, u := range users {
		if uk := DNKey(u); !read[uk] {
			read[uk] = true
			if _, err := cr.rereadDirSync(ctx, c, u, byDN); err != nil {
				return err
			}
		}
	}
	return nil
}

// dirsyncDelta is what DirSync returned since a cookie.
type dirsyncDelta struct {
	// entries counts the objects returned.
	entries int
	// deleted are the ids (objectGUIDs) of the tombstones returned.
	deleted map[string]bool
	// outside are the ids of the objects returned outside the search
	// base (moved out of it).
	outside map[string]bool
	// objects maps the id of each other object returned to its DN, and
	// order lists those ids in the order they came.
	objects map[string]string
	order   []string
	// members are the member values added or removed (member;range=1-1
	// and member;range=0-0), or every value of a member attribute sent
	// whole, once each.
	members []string
}

// underSearchBase reports whether dn is the search base or below it.
func (a *Authenticator) underSearchBase(dn string) bool {
	k, base := DNKey(dn), DNKey(a.cfg.SearchBase)
	return k == base || strings.HasSuffix(k, ","+base)
}

// readDelta runs DirSync from cookie over dir and sorts what it returns.
func (a *Authenticator) readDelta(ctx context.Context, dir Directory, account, base string, cookie []byte) (*dirsyncDelta, []byte, error) {
	d := &dirsyncDelta{deleted: map[string]bool{}, outside: map[string]bool{}, objects: map[string]string{}}
	seen := map[string]bool{} // DNKey of members
	cookie, err := a.dirsync(ctx, dir, account, base, cookie, func(e *ldap.Entry) {
		d.entries++
		for _, at := range e.Attributes {
			name := strings.ToLower(at.Name)
			if name == "member" || strings.HasPrefix(name, "member;range=") {
				for _, v := range at.Values {
					if k := DNKey(v); !seen[k] {
						seen[k] = true
						d.members = append(d.members, v)
					}
				}
			}
		}
		id := guidKey(e)
		switch {
		case id == "":
		case strings.EqualFold(e.GetEqualFoldAttributeValue("isDeleted"), "TRUE"):
			d.deleted[id] = true
			delete(d.objects, id)
		case !a.underSearchBase(e.DN):
			// Moved out of the search base: no longer a user of the
			// login search (if it was one).
			d.outside[id] = true
			delete(d.objects, id)
		default:
			if _, ok := d.objects[id]; !ok {
				d.order = append(d.order, id)
			}
			delete(d.deleted, id)
			delete(d.outside, id)
			d.objects[id] = e.DN
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return d, cookie, nil
}

// rereadDirSync reads dn with the login search's filter (a base search)
// and hands an entry found to the full sync's entry handling. An entry
// found whose DN an other known entry had marks that one gone. found is
// false when the login search does not return dn (deleted, out of the
// login group, disabled, not a user).
func (cr *changeRead) rereadDirSync(ctx context.Context, c *conn, dn string, byDN map[string]string) (found bool, err error) {
	r := cr.r
	res, err := c.Search(ctx, ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, cr.filter, cr.attrs, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return false, r.abort(syncReadUsers, orCtxError(ctx, classifyNetwork(err)))
	}
	if err != nil || len(res.Entries) == 0 {
		if id := byDN[DNKey(dn)]; id != "" {
			cr.gone[id] = true
		}
		return false, nil
	}
	e := res.Entries[0]
	id := guidKey(e)
	if id == "" {
		return false, r.abort(syncReadUsers, fmt.Errorf("the entry %q came without objectGUID: the sync account must read it", e.DN))
	}
	e.Attributes = slices.DeleteFunc(e.Attributes, func(at *ldap.EntryAttribute) bool { return strings.EqualFold(at.Name, "objectGUID") })
	if old := byDN[DNKey(e.DN)]; old != "" && old != id {
		cr.gone[old] = true
	}
	if _, dup := cr.changed[id]; dup {
		return true, nil
	}
	cr.changed[id] = changeEntry{DN: e.DN, Names: usernames(e, r.a.cfg.usernameAttribute())}
	r.entry(e)
	return true, nil
}

// usersUnder lists the DNs of the user objects under the search base that
// are members of group, directly or through nesting.
func (cr *changeRead) usersUnder(ctx context.Context, c *conn, group string) ([]string, error) {
	a := cr.r.a
	filter := "(&(objectClass=" + ldap.EscapeFilter(a.cfg.ObjectClass) + ")(memberOf:" + oidMatchingRuleInChain + ":=" + ldap.EscapeFilter(group) + "))"
	req := ldap.NewSearchRequest(a.cfg.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"1.1"}, nil)
	var out []string
	err := pagedSearch(ctx, c, req, a.cfg.SyncPageSize, func(page *ldap.SearchResult) error {
		for _, e := range page.Entries {
			out = append(out, e.DN)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, cr.r.abort(syncReadUsers, wrap(orCtxError(ctx, classifyNetwork(err)), "the members of %s, nested included", group))
	}
	return out, nil
}

// defaultPollInterval is WatchOptions.PollInterval's default.
const defaultPollInterval = 5 * time.Second

// watchDirSync is WatchChanges on Active Directory, on the connection c:
// one run to catch up, then, every PollInterval, a DirSync search from the
// last cookie seen (which writes nothing); when it returns an object, a
// run of SyncChanges reads and applies the changes since the stored
// cookie, with the same rules, guard and report. A run the removal guard
// refuses saves no cookie: the next change runs it again. The connection
// lost, it returns (WatchChanges reconnects with back-off).
func (a *Authenticator) watchDirSync(ctx context.Context, c *conn, opts WatchOptions) (held bool, err error) {
	interval := opts.PollInterval
	if interval <= 0 {
		interval = defaultPollInterval
	}
	base, err := a.dirsyncBase(ctx, c)
	if err != nil {
		return false, err
	}
	w := &dirsyncWatch{a: a, c: c, opts: opts, base: base}
	stored, err := a.storedDirSyncCookie(ctx)
	if err != nil {
		return false, err
	}
	if err := w.run(ctx, stored); err != nil { // catch up
		return false, err
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return held, ctxError(ctx)
		case <-t.C:
		}
		delta, next, err := w.poll(ctx)
		if err != nil {
			return held, err
		}
		held = true
		if delta.entries > 0 {
			if err := w.run(ctx, next); err != nil {
				return held, err
			}
		} else {
			w.seen = next
		}
		t.Reset(interval)
	}
}

// dirsyncWatch is a watch of Active Directory on the connection c.
type dirsyncWatch struct {
	a    *Authenticator
	c    *conn
	opts WatchOptions
	base string // the DirSync base
	// seen is the cookie the next poll asks from. After a run that saved
	// its state it is the stored cookie, so a change made during the run
	// is seen by the next poll; after a run that saved nothing (the
	// removal guard refused it) it is the last poll's, so the changes the
	// run left do not run it again every interval: the next change does.
	seen []byte
}

// poll asks DirSync what changed since the cookie seen (writing nothing).
// A refused cookie counts as a change: the run reads every entry again and
// saves a new cookie.
func (w *dirsyncWatch) poll(ctx context.Context) (*dirsyncDelta, []byte, error) {
	delta, next, err := w.a.readDelta(ctx, w.c, w.c.as.name, w.base, w.seen)
	switch {
	case ctx.Err() != nil:
		return nil, nil, ctxError(ctx)
	case errors.Is(err, errRefreshRequired):
		return &dirsyncDelta{entries: 1}, nil, nil
	case err != nil:
		return nil, nil, watchError(err)
	}
	return delta, next, nil
}

// run runs SyncChanges, reports it, and sets the cookie the next poll asks
// from: the stored one if the run saved its state, else next (the
// directory as it is now if next is nil).
func (w *dirsyncWatch) run(ctx context.Context, next []byte) error {
	rep, err := w.a.syncChanges(ctx, w.opts.SyncOptions, nil)
	if ctx.Err() != nil && (rep == nil || !rep.Applied) {
		return ctxError(ctx) // stopped mid-run: nothing was written
	}
	if w.opts.Report != nil {
		w.opts.Report(rep, err)
	}
	w.seen = next
	if rep != nil && rep.ChangeSync != nil && rep.ChangeSync.StateSaved {
		stored, err := w.a.storedDirSyncCookie(ctx)
		if err != nil {
			return err
		}
		w.seen = stored
	}
	if w.seen == nil {
		if w.seen, err = w.a.dirsyncNow(ctx, w.c, w.base); err != nil {
			return watchError(err)
		}
	}
	return nil
}

// watchError is err for WatchChanges: a DC that refuses DirSync ends the
// watch with ErrNoContentSync, as a directory without content
// synchronisation does; anything else is retried.
func watchError(err error) error {
	if errors.Is(err, errNoDirSync) {
		return fmt.Errorf("%w (%s)", ErrNoContentSync, unprefixed(err))
	}
	return err
}

// storedDirSyncCookie is the cookie of the stored state, if it is one of
// DirSync for the current settings.
func (a *Authenticator) storedDirSyncCookie(ctx context.Context) ([]byte, error) {
	raw, err := a.cfg.Store.(SyncStateStore).LoadSyncState(ctx)
	if err != nil {
		return nil, &StoreError{Op: "load sync state", Err: err}
	}
	var st changeState
	if len(raw) == 0 || json.Unmarshal(raw, &st) != nil || st.Fingerprint != dirsyncFingerprintPrefix+a.changeFingerprint() {
		return nil, nil
	}
	return st.Cookie, nil
}
