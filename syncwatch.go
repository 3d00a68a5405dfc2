package ldapauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// WatchOptions: the options of every run, Report called (quick) after each
// run and lost connection, the reconnect back-off (1 s to 1 min).
type WatchOptions struct {
	SyncOptions
	Report             func(*SyncReport, error)
	RetryMin, RetryMax time.Duration
	PollInterval       time.Duration // Active Directory: how often DirSync is asked (5 s)
}

// WatchChanges runs [Authenticator.SyncChanges] at each change (RFC 4533
// refreshAndPersist; DirSync polled on Active Directory) until ctx ends (then
// nil). Run errors go to opts.Report; lost connections are retried.
func (a *Authenticator) WatchChanges(ctx context.Context, opts WatchOptions) error {
	if err := a.cfg.ValidateSync(); err != nil {
		return err
	}
	if a.cfg.Store == nil {
		return configErr("the sync writes into Config.Store, which is nil", envSyncRelations)
	}
	if _, ok := a.cfg.Store.(SyncStateStore); !ok {
		return configErr("WatchChanges keeps its cookie in the store: Config.Store must implement SyncStateStore", envSyncRelations)
	}
	if opts.DryRun {
		return &ConfigError{Variables: []string{"WatchOptions.DryRun"},
			Problem: "a watch cannot be a dry run: a watcher that writes nothing would read the same changes forever"}
	}
	minWait, maxWait := opts.RetryMin, opts.RetryMax
	if minWait <= 0 {
		minWait = time.Second
	}
	if maxWait < minWait {
		maxWait = max(minWait, time.Minute)
	}
	wait := minWait
	for {
		held, err := a.watchOnce(ctx, opts)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNoContentSync):
			return err
		}
		if held {
			wait = minWait
		}
		a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: watch lost its connection, reconnecting",
			slog.String("error", err.Error()), slog.Duration("in", wait))
		if opts.Report != nil {
			opts.Report(nil, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// watchOnce watches on one connection until it is lost or ctx ends. held
// reports whether the searches were running (the back-off then starts
// again from its minimum).
func (a *Authenticator) watchOnce(ctx context.Context, opts WatchOptions) (held bool, err error) {
	c, err := a.syncConn(ctx)
	if err != nil {
		return false, err
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.close()
	defer cancel()

	if d, err := a.directoryType(wctx, c); err != nil {
		return false, err
	} else if d == DirectoryActiveDirectory {
		return a.watchDirSync(wctx, c, opts) // dirsync.go
	}
	filter, err := a.watchFilter(wctx, c)
	if err != nil {
		return false, err
	}
	cookie := a.storedChangeCookie(wctx)
	searches := a.watchSearches(filter)
	w := &syncreplWatch{a: a, opts: opts, trigger: make(chan struct{}, 1),
		ended: make(chan error, len(searches)), deleted: map[string]bool{}}
	for i, req := range searches {
		var ck []byte
		if i == 0 {
			ck = cookie
		}
		resp := c.l.Syncrepl(wctx, req, 64, ldap.SyncRequestModeRefreshAndPersist, ck, false)
		users := i == 0
		wg.Go(func() { w.ended <- w.follow(resp, req.BaseDN, users) })
	}
	return w.loop(wctx)
}

// syncreplWatch is a watch on one connection of a directory with content
// synchronisation: its persistent searches trigger the runs.
type syncreplWatch struct {
	a       *Authenticator
	opts    WatchOptions
	trigger chan struct{} // a run is due
	ended   chan error    // a persistent search ended, and why
	// deleted are the entryUUIDs the users' search reported deleted, for
	// the runs until one saves its cookie (see syncChanges); mu guards it.
	mu      sync.Mutex
	deleted map[string]bool
}

// watchFilter is the login search's filter, which the users' persistent
// search watches.
func (a *Authenticator) watchFilter(ctx context.Context, c *conn) (string, error) {
	cfg, err := a.searchConfig(ctx, c)
	if err != nil {
		return "", err
	}
	filter, err := userFilter(cfg, a.cfg.SearchFilters, map[string]string{})
	if err != nil {
		return "", wrap(err, "search filter builder %s with an empty lookup", formatterName(a.cfg.SearchFilters))
	}
	return filter, nil
}

// storedChangeCookie is the cookie of the stored state, if it is one of
// RFC 4533 for the current settings (none: the users' search starts with
// a full refresh).
func (a *Authenticator) storedChangeCookie(ctx context.Context) []byte {
	raw, err := a.cfg.Store.(SyncStateStore).LoadSyncState(ctx)
	if err != nil || len(raw) == 0 {
		return nil
	}
	var st changeState
	if json.Unmarshal(raw, &st) == nil && st.Fingerprint == a.changeFingerprint() {
		return st.Cookie
	}
	return nil
}

// watchSearches are the persistent searches of a watch: the users (first),
// then each synced group and the login group, once each. They only say
// when to run: they ask for no attribute.
func (a *Authenticator) watchSearches(filter string) []*ldap.SearchRequest {
	searches := []*ldap.SearchRequest{ldap.NewSearchRequest(a.cfg.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"1.1"}, nil)}
	seen := map[string]bool{}
	for _, g := range append(slices.Clone(a.synced), a.loginGroup) {
		if g.dn != "" && !seen[g.key] {
			seen[g.key] = true
			searches = append(searches, ldap.NewSearchRequest(g.dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		}
	}
	return searches
}

// follow reads the persistent search of base until it ends, triggering a
// run at each message (and noting the deletions the users' search
// reports), and returns why it ended.
func (w *syncreplWatch) follow(resp ldap.Response, base string, users bool) error {
	plain := false
	for resp.Next() {
		if resp.Entry() != nil && ldap.FindControl(resp.Controls(), ldap.ControlTypeSyncState) == nil {
			plain = true // Samba: the control accepted, and ignored
			break
		}
		if users {
			w.mu.Lock()
			noteDeleted(w.deleted, resp.Controls())
			w.mu.Unlock()
		}
		select {
		case w.trigger <- struct{}{}:
		default: // a run is due already
		}
	}
	return searchEnded(resp.Err(), plain, base)
}

// searchEnded says why the persistent search of base ended: err, or plain
// (entries came without the sync state control).
func searchEnded(err error, plain bool, base string) error {
	switch {
	case plain:
		return ErrNoContentSync
	case err != nil && ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
		return ErrNoContentSync
	case err != nil && (ldap.IsErrorWithCode(err, ldap.LDAPResultSyncRefreshRequired) || isCookieRefusal(err)):
		// The run below reads every entry and saves a new
		// cookie; the next connection uses it.
		return fmt.Errorf("%w: %s", errRefreshRequired, ldapMessage(err))
	case err != nil:
		return wrap(classifyNetwork(err), "watch %s", base)
	default:
		return fmt.Errorf("ldapauth: the directory ended the persistent search of %s", base)
	}
}

// loop runs once to catch up with what changed while nobody watched, then
// at each trigger, until a search ends or ctx does.
func (w *syncreplWatch) loop(ctx context.Context) (held bool, err error) {
	w.run(ctx)
	for {
		select {
		case <-ctx.Done():
			return held, ctxError(ctx)
		case err := <-w.ended:
			if errors.Is(err, errRefreshRequired) {
				w.run(ctx)
			}
			return held, err
		case <-w.trigger:
			held = true
			w.run(ctx)
		}
	}
}

// run runs SyncChanges with the deletions noted so far, forgets them once
// a run saved its cookie, and reports the run.
func (w *syncreplWatch) run(ctx context.Context) {
	w.mu.Lock()
	taken := maps.Clone(w.deleted)
	w.mu.Unlock()
	rep, err := w.a.syncChanges(ctx, w.opts.SyncOptions, taken)
	if ctx.Err() != nil && (rep == nil || !rep.Applied) {
		// Stopped mid-run: nothing was written. A run that applied
		// its changes just before the stop is still reported below.
		return
	}
	if rep != nil && rep.ChangeSync != nil && rep.ChangeSync.StateSaved {
		w.mu.Lock()
		for id := range taken {
			delete(w.deleted, id)
		}
		w.mu.Unlock()
	}
	if w.opts.Report != nil {
		w.opts.Report(rep, err)
	}
}

// noteDeleted adds the entryUUIDs a persistent search's message reports
// deleted to deleted.
func noteDeleted(deleted map[string]bool, controls []ldap.Control) {
	for _, ctrl := range controls {
		switch ctrl := ctrl.(type) {
		case *ldap.ControlSyncState:
			if ctrl.State == ldap.SyncStateDelete {
				deleted[ctrl.EntryUUID.String()] = true
			}
		case *ldap.ControlSyncInfo:
			if set := ctrl.SyncIdSet; set != nil && set.RefreshDeletes {
				for _, id := range set.SyncUUIDs {
					deleted[id.String()] = true
				}
			}
		}
	}
}
