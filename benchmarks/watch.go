package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// WatchOptions configures MeasureWatchLatency.
type WatchOptions struct {
	Users      int        // generated users in the directory
	Deletions  int        // users deleted, one at a time
	Store      ScaleStore // the store the watcher writes into
	SessionLog int        // syncprov-sessionlog (0: none, refreshes answer with a present phase)
	Timeout    time.Duration
}

// WatchResult is the latency of deletions through Authenticator.WatchChanges.
type WatchResult struct {
	Options WatchOptions
	// Latencies are, for each deletion in order, the time from the
	// directory confirming the delete to the report of the watcher's run
	// that removed the user from the store (the run saves its cookie
	// after the removal: the report comes a little after the user is
	// gone).
	Latencies []time.Duration
	// BeforeProgress are, for each deletion, the time from the delete to
	// the first progress report of the run that removed it: the watcher
	// noticing the change, and what the run does before it reports
	// progress (loading its state and the store's users).
	BeforeProgress []time.Duration
	// Runs are the watcher's runs (SyncChanges) while the deletions were
	// made, RunWalls their wall times (from their first progress report to
	// their report), Phases the time all of them spent in each phase.
	Runs     int
	RunWalls []time.Duration
	Phases   map[string]time.Duration
	// StateLoads, StateLoadTime and StateBytes are the calls of the SQL
	// store's LoadSyncState (one a run), their total time and the size of
	// the last state loaded.
	StateLoads    int
	StateLoadTime time.Duration
	StateBytes    int
	// Modes counts the runs by ChangeSync.Mode.
	Modes map[string]int
}

// stateTimer is the SQL store, every method and optional interface of it
// kept (embedded), with LoadSyncState timed.
type stateTimer struct {
	*sqlstore.Store
	mu    sync.Mutex
	loads int
	took  time.Duration
	bytes int
}

func (s *stateTimer) LoadSyncState(ctx context.Context) ([]byte, error) {
	start := time.Now()
	b, err := s.Store.LoadSyncState(ctx)
	s.mu.Lock()
	s.loads++
	s.took += time.Since(start)
	s.bytes = len(b)
	s.mu.Unlock()
	return b, err
}

// MeasureWatchLatency starts slapd with syncprov and o.Users generated
// users, fills a store of o.Store with one sync, runs
// Authenticator.WatchChanges into it, then deletes o.Deletions generated
// users one at a time from the directory, each after the last has left
// the store, and measures for each how long the store kept it.
func MeasureWatchLatency(ctx context.Context, o WatchOptions, progress io.Writer) (*WatchResult, error) {
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	sl, err := slapdtest.New(slapdtest.Options{GeneratedUsers: o.Users, GeneratedUserGroups: []string{"readers"},
		SyncProv: true, SessionLog: o.SessionLog, LogLevel: "0"})
	if err != nil {
		return nil, err
	}
	defer sl.Stop()
	t, err := newTarget("slapd", Plain, sl.URL, sl.LDAPSURL, sl.CAFile, sl.CAPEM)
	if err != nil {
		return nil, err
	}
	t.BaseDN, t.SearchBase, t.ObjectClass = slapdtest.BaseDN, slapdtest.PeopleDN, "inetOrgPerson"
	t.ServiceDN, t.ServicePassword = slapdtest.ServiceDN, slapdtest.ServicePassword
	t.syncedGroups = []string{slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel")}

	stores, err := NewStores(o.Store)
	if err != nil {
		return nil, err
	}
	defer stores.Close()
	store, closeStore, err := stores.New(ctx)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	var states *stateTimer
	if s, ok := store.(*sqlstore.Store); ok {
		states = &stateTimer{Store: s}
		store = states
	}
	a, err := NewSyncer(t, store)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if progress != nil {
		fmt.Fprintf(progress, "filling a %s store with %d users\n", o.Store, o.Users)
	}
	if _, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true}); err != nil {
		return nil, err
	}

	res := &WatchResult{Options: o, Modes: map[string]int{}, Phases: map[string]time.Duration{}}
	var (
		mu       sync.Mutex
		measure  bool
		runErr   error
		removed  = map[string][2]time.Time{} // username -> the first progress and the report of the run that removed it
		phase    string                      // of the run under way
		since    time.Time                   // when it entered phase
		started  time.Time                   // when the run under way started
		reported = make(chan struct{}, 1)
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- a.WatchChanges(wctx, ldapauth.WatchOptions{
			SyncOptions: ldapauth.SyncOptions{CreateUsers: true, Progress: func(p ldapauth.SyncProgress) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if started.IsZero() {
					started, phase, since = now, p.Phase, now
				}
				if p.Phase != phase {
					if measure {
						res.Phases[phase] += now.Sub(since)
					}
					phase, since = p.Phase, now
				}
			}},
			Report: func(rep *ldapauth.SyncReport, err error) {
				now := time.Now()
				mu.Lock()
				if err != nil && runErr == nil {
					runErr = err
				}
				if rep != nil && rep.Applied {
					for _, u := range rep.UsersRemoved {
						removed[u] = [2]time.Time{started, now}
					}
				}
				if measure && rep != nil {
					res.Runs++
					if !started.IsZero() {
						res.RunWalls = append(res.RunWalls, now.Sub(started))
						res.Phases[phase] += now.Sub(since)
					}
					if rep.ChangeSync != nil {
						res.Modes[rep.ChangeSync.Mode]++
					}
				}
				started = time.Time{}
				mu.Unlock()
				select {
				case reported <- struct{}{}:
				default:
				}
			},
		})
	}()
	// The watcher's first run catches up (a full refresh without a
	// cookie); the deletions start after it.
	select {
	case <-reported:
	case err := <-watchDone:
		return nil, fmt.Errorf("benchmarks: the watcher ended before its first run: %v", err)
	case <-time.After(10 * o.Timeout):
		return nil, errors.New("benchmarks: the watcher's first run did not end")
	}
	mu.Lock()
	if runErr != nil {
		mu.Unlock()
		return nil, fmt.Errorf("benchmarks: the watcher's first run: %w", runErr)
	}
	measure = true
	mu.Unlock()

	admin, err := ldap.DialURL(sl.URL)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := admin.Bind(slapdtest.AdminDN, slapdtest.AdminPassword); err != nil {
		return nil, err
	}
	step := max(1, o.Users/o.Deletions)
	for k := range o.Deletions {
		uid := slapdtest.GeneratedUID(1 + k*step)
		if err := admin.Del(ldap.NewDelRequest(slapdtest.UserDN(uid), nil)); err != nil {
			return nil, fmt.Errorf("delete %s: %w", uid, err)
		}
		start := time.Now()
		deadline := time.NewTimer(o.Timeout)
		for {
			mu.Lock()
			at, gone := removed[uid]
			err := runErr
			mu.Unlock()
			if gone {
				res.Latencies = append(res.Latencies, at[1].Sub(start))
				if !at[0].IsZero() {
					res.BeforeProgress = append(res.BeforeProgress, at[0].Sub(start))
				}
				break
			}
			select {
			case <-reported:
				continue
			case err := <-watchDone:
				return nil, fmt.Errorf("benchmarks: the watcher ended: %v", err)
			case <-deadline.C:
				return nil, fmt.Errorf("benchmarks: %s still in the store %v after its deletion (a run's error: %v)", uid, o.Timeout, err)
			}
		}
		deadline.Stop()
		if progress != nil && (k+1)%10 == 0 {
			fmt.Fprintf(progress, "%d deletions, last %v\n", k+1, res.Latencies[k].Round(time.Millisecond))
		}
	}
	cancel()
	<-watchDone
	if states != nil {
		states.mu.Lock()
		res.StateLoads, res.StateLoadTime, res.StateBytes = states.loads, states.took, states.bytes
		states.mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	if runErr != nil {
		return res, fmt.Errorf("benchmarks: a watcher run failed: %w", runErr)
	}
	return res, nil
}

// WatchTable writes r as Markdown: the latency percentiles and the runs.
func WatchTable(w io.Writer, r *WatchResult) {
	lat := slices.Clone(r.Latencies)
	slices.Sort(lat)
	runs := slices.Clone(r.RunWalls)
	slices.Sort(runs)
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	before := slices.Clone(r.BeforeProgress)
	slices.Sort(before)
	fmt.Fprintln(w, "| users | store | sessionlog | deletions | p50 | p99 | max | delete to the run's first progress, p50 | runs | run wall p50 (first progress to report) | run wall max | run modes |")
	fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	var p50r, maxr time.Duration
	if len(runs) > 0 {
		p50r, maxr = percentile(runs, 0.50), runs[len(runs)-1]
	}
	var p50b time.Duration
	if len(before) > 0 {
		p50b = percentile(before, 0.50)
	}
	fmt.Fprintf(w, "| %d | %s | %d | %d | %s | %s | %s | %s | %d | %s | %s | %v |\n", r.Options.Users, r.Options.Store, r.Options.SessionLog,
		len(lat), ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1]), ms(p50b), r.Runs, ms(p50r), ms(maxr), r.Modes)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Time per run in each phase (mean over the runs):")
	fmt.Fprintln(w)
	for _, p := range slices.Sorted(maps.Keys(r.Phases)) {
		fmt.Fprintf(w, "- %s: %s\n", p, ms(r.Phases[p]/time.Duration(max(1, r.Runs))))
	}
	if r.StateLoads > 0 {
		fmt.Fprintf(w, "\nThe store's LoadSyncState (before a run's first progress report): %d calls, %s each on average; the last state loaded was %.1f MiB.\n",
			r.StateLoads, ms(r.StateLoadTime/time.Duration(r.StateLoads)), float64(r.StateBytes)/(1<<20))
	}
}
