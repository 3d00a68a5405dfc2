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
	cfg, err := a.searchConfig(wctx, c)
	if err != nil {
		return false, err
	}
	filter, err := userFilter(cfg, a.cfg.SearchFilters, map[string]string{})
	if err != nil {
		return false, wrap(err, "search filter builder %s with an empty lookup", formatterName(a.cfg.SearchFilters))
	}
	var cookie []byte
	if raw, err := a.cfg.Store.(SyncStateStore).LoadSyncState(wctx); err == nil && len(raw) > 0 {
		var st changeState
		if json.Unmarshal(raw, &st) == nil && st.Fingerprint == a.changeFingerprint() {
			cookie = st.Cookie
		}
	}
	// The searches only say when to run: they ask for no attribute.
	searches := []*ldap.SearchRequest{ldap.NewSearchRequest(a.cfg.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"1.1"}, nil)}
	seen := map[string]bool{}
	for _, g := range append(slices.Clone(a.synced), a.loginGroup) {
		if g.dn != "" && !seen[g.key] {
			seen[g.key] = true
			searches = append(searches, ldap.NewSearchRequest(g.dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		}
	}
	trigger := make(chan struct{}, 1)
	ended := make(chan error, len(searches))
	// deleted are the entryUUIDs the users' search reported deleted, for
	// the runs until one saves its cookie (see syncChanges).
	var mu sync.Mutex
	deleted := map[string]bool{}
	for i, req := range searches {
		var ck []byte
		if i == 0 {
			ck = cookie
		}
		resp := c.l.Syncrepl(wctx, req, 64, ldap.SyncRequestModeRefreshAndPersist, ck, false)
		users := i == 0
		wg.Go(func() {
			plain := false
			for resp.Next() {
				if resp.Entry() != nil && ldap.FindControl(resp.Controls(), ldap.ControlTypeSyncState) == nil {
					plain = true // Samba: the control accepted, and ignored
					break
				}
				if users {
					mu.Lock()
					noteDeleted(deleted, resp.Controls())
					mu.Unlock()
				}
				select {
				case trigger <- struct{}{}:
				default: // a run is due already
				}
			}
			err := resp.Err()
			switch {
			case plain:
				err = ErrNoContentSync
			case err != nil && ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension):
				err = ErrNoContentSync
			case err != nil && (ldap.IsErrorWithCode(err, ldap.LDAPResultSyncRefreshRequired) || isCookieRefusal(err)):
				// The run below reads every entry and saves a new
				// cookie; the next connection uses it.
				err = fmt.Errorf("%w: %s", errRefreshRequired, ldapMessage(err))
			case err != nil:
				err = wrap(classifyNetwork(err), "watch %s", req.BaseDN)
			default:
				err = fmt.Errorf("ldapauth: the directory ended the persistent search of %s", req.BaseDN)
			}
			ended <- err
		})
	}
	run := func() {
		mu.Lock()
		taken := maps.Clone(deleted)
		mu.Unlock()
		rep, err := a.syncChanges(wctx, opts.SyncOptions, taken)
		if wctx.Err() != nil && (rep == nil || !rep.Applied) {
			// Stopped mid-run: nothing was written. A run that applied
			// its changes just before the stop is still reported below.
			return
		}
		if rep != nil && rep.ChangeSync != nil && rep.ChangeSync.StateSaved {
			mu.Lock()
			for id := range taken {
				delete(deleted, id)
			}
			mu.Unlock()
		}
		if opts.Report != nil {
			opts.Report(rep, err)
		}
	}
	run() // catch up with what changed while nobody watched
	for {
		select {
		case <-wctx.Done():
			return held, ctxError(wctx)
		case err := <-ended:
			if errors.Is(err, errRefreshRequired) {
				run()
			}
			return held, err
		case <-trigger:
			held = true
			run()
		}
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
