package benchmarks

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/pgtest"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// ScalePageSize is the page size of both the sync and the raw paged
// search at scale: ldapauth's default.
const ScalePageSize = 500

// StartScaleTarget starts server ("slapd" or "glauth") with users generated
// users and returns its plain target, whose service account may read them
// all, and a function that stops it. slapd is bulk-loaded with its own
// slapadd before it starts; the test directory builds every entry on each
// search (see ldaptest), so it is only fit for the smaller sizes.
func StartScaleTarget(server string, users int) (*Target, func(), error) {
	switch server {
	case "slapd":
		sl, err := slapdtest.New(slapdtest.Options{GeneratedUsers: users, GeneratedUserGroups: []string{"readers"}, LogLevel: "0"})
		if err != nil {
			return nil, nil, err
		}
		t, err := newTarget("slapd", Plain, sl.URL, sl.LDAPSURL, sl.CAFile, sl.CAPEM)
		if err != nil {
			sl.Stop()
			return nil, nil, err
		}
		t.BaseDN, t.SearchBase, t.ObjectClass = slapdtest.BaseDN, slapdtest.PeopleDN, "inetOrgPerson"
		t.ServiceDN, t.ServicePassword = slapdtest.ServiceDN, slapdtest.ServicePassword
		t.syncedGroups = []string{slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel")}
		return t, sl.Stop, nil
	case "glauth":
		dir, err := os.MkdirTemp("", "ldapbench-")
		if err != nil {
			return nil, nil, err
		}
		gl, err := startGLAuthChild(dir, strconv.Itoa(users))
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		stop := func() { gl.stop(); os.RemoveAll(dir) }
		t, err := newTarget("glauth", Plain, gl.URL, gl.LDAPSURL, gl.caFile, gl.CAPEM)
		if err != nil {
			stop()
			return nil, nil, err
		}
		t.BaseDN, t.SearchBase, t.ObjectClass = "dc=example,dc=com", "dc=example,dc=com", "posixAccount"
		t.ServiceDN, t.ServicePassword = "uid=svc,cn=svcaccts,ou=users,dc=example,dc=com", "svc-password"
		for i := range min(10, max(1, users/10)) {
			t.syncedGroups = append(t.syncedGroups, fmt.Sprintf("cn=group%04d,ou=groups,dc=example,dc=com", i))
		}
		return t, stop, nil
	}
	return nil, nil, fmt.Errorf("benchmarks: unknown server %q", server)
}

// PagedSearch is the floor of a directory sync: on one connection, as the
// service account, it reads every user entry under t.SearchBase (the login
// attributes) with the paged results control, pageSize entries a page,
// keeping no page after the next arrives. It returns how many entries came.
func PagedSearch(t *Target, pageSize uint32) (int, error) {
	c, err := t.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Bind(t.ServiceDN, t.ServicePassword); err != nil {
		return 0, err
	}
	paging := ldap.NewControlPaging(pageSize)
	req := ldap.NewSearchRequest(t.SearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass="+t.ObjectClass+")", loginAttributes, []ldap.Control{paging})
	n := 0
	for {
		res, err := c.Search(req)
		if err != nil {
			return n, err
		}
		n += len(res.Entries)
		p, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if !ok || len(p.Cookie) == 0 {
			return n, nil
		}
		paging.SetCookie(p.Cookie)
	}
}

// NewSyncer returns an Authenticator that syncs t's users into store, as
// the Flagsmith sync command is configured: the service account binds,
// LDAP_SYNC_PAGE_SIZE is ScalePageSize, the synced groups are t's.
func NewSyncer(t *Target, store ldapauth.UserStore) (*ldapauth.Authenticator, error) {
	env := map[string]string{
		"LDAP_AUTH_URL":                          t.URL,
		"LDAP_AUTH_SEARCH_BASE":                  t.SearchBase,
		"LDAP_AUTH_OBJECT_CLASS":                 t.ObjectClass,
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     strings.Join(t.syncedGroups, ":"),
		"LDAP_SYNC_USER_USERNAME":                t.ServiceDN,
		"LDAP_SYNC_USER_PASSWORD":                t.ServicePassword,
		"LDAP_SYNC_PAGE_SIZE":                    strconv.Itoa(ScalePageSize),
	}
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return nil, err
	}
	cfg.Store = store
	return ldapauth.New(cfg)
}

// SyncCase is one way of running the sync at scale.
type SyncCase string

const (
	// PagedSearchCase is the floor: PagedSearch of the same entries.
	PagedSearchCase SyncCase = "paged-search"
	// SteadySync is a no-op sync: the store already in step (filled by one
	// sync with CreateUsers beforehand), as a scheduled job mostly runs.
	SteadySync SyncCase = "sync"
	// FirstSync is a sync with CreateUsers into an empty store: every
	// user, join and membership written, in batches when the store
	// implements ldapauth.BatchStore.
	FirstSync SyncCase = "first-sync"
	// FirstSyncPerCall is FirstSync with the store seen through
	// ldapauth.UserStore alone: one call per change, as before batching.
	FirstSyncPerCall SyncCase = "first-sync-per-call"
)

// SyncCases are the cases measured by default, the floor first.
var SyncCases = []SyncCase{PagedSearchCase, SteadySync, FirstSync}

// ScaleStore names the store the sync at scale writes into.
type ScaleStore string

const (
	StoreMem      ScaleStore = "memstore"
	StoreSQLite   ScaleStore = "sqlite"   // examples/sqlstore, a file in a temporary directory
	StorePostgres ScaleStore = "postgres" // examples/sqlstore on a server of the run's own
)

// Stores makes empty stores of one kind; Close removes what it made.
type Stores struct {
	Kind ScaleStore
	dir  string
	pg   *pgtest.Server
	n    int
}

// NewStores prepares to make stores of kind: a temporary directory for
// SQLite files, a PostgreSQL server (started here) for PostgreSQL.
func NewStores(kind ScaleStore) (*Stores, error) {
	st := &Stores{Kind: kind}
	switch kind {
	case StoreMem:
	case StoreSQLite:
		dir, err := os.MkdirTemp("", "ldapbench-sqlite-")
		if err != nil {
			return nil, err
		}
		st.dir = dir
	case StorePostgres:
		pg, err := pgtest.NewWith(pgtest.Options{Durable: true})
		if err != nil {
			return nil, err
		}
		st.pg = pg
	default:
		return nil, fmt.Errorf("benchmarks: unknown store %q (want memstore, sqlite or postgres)", kind)
	}
	return st, nil
}

// New returns an empty store and a function that closes it.
func (st *Stores) New(ctx context.Context) (ldapauth.UserStore, func(), error) {
	st.n++
	switch st.Kind {
	case StoreSQLite:
		path := filepath.Join(st.dir, fmt.Sprintf("sync-%d.db", st.n))
		s, err := sqlstore.Open(ctx, sqlstore.DriverSQLite, path)
		if err != nil {
			return nil, nil, err
		}
		return s, func() {
			s.Close()
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(path + suffix)
			}
		}, nil
	case StorePostgres:
		dsn, err := st.pg.CreateDatabase(ctx)
		if err != nil {
			return nil, nil, err
		}
		s, err := sqlstore.Open(ctx, sqlstore.DriverPostgres, dsn)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	return ldapauth.NewMemStore(), func() {}, nil
}

// Close stops the PostgreSQL server and removes the SQLite files.
func (st *Stores) Close() {
	if st.pg != nil {
		st.pg.Stop()
	}
	if st.dir != "" {
		os.RemoveAll(st.dir)
	}
}

// perCall hides a store's BatchStore: the sync writes one call per change.
type perCall struct{ ldapauth.UserStore }

// SyncScale runs the cases of the sync at scale against t, which holds at
// least users users. Prepare once (it fills the steady store), then call
// Run for each case; the cases may be interleaved.
type SyncScale struct {
	t      *Target
	users  int
	steady *ldapauth.Authenticator
	stores *Stores
	close  func()
	// Cases are the cases MeasureSyncScale runs, the floor first.
	Cases []SyncCase
}

// PrepareSyncScale fills a MemStore with one sync, for the steady case.
func PrepareSyncScale(ctx context.Context, t *Target, users int) (*SyncScale, error) {
	return PrepareSyncScaleInto(ctx, t, users, &Stores{Kind: StoreMem})
}

// PrepareSyncScaleInto fills a store of stores with one sync, for the
// steady case; the first syncs write into new stores of stores.
func PrepareSyncScaleInto(ctx context.Context, t *Target, users int, stores *Stores) (*SyncScale, error) {
	store, closeStore, err := stores.New(ctx)
	if err != nil {
		return nil, err
	}
	a, err := NewSyncer(t, store)
	if err != nil {
		closeStore()
		return nil, err
	}
	rep, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
	if err == nil && rep.DirectoryUsers < users {
		err = fmt.Errorf("benchmarks: the sync read %d users of %d", rep.DirectoryUsers, users)
	}
	if err != nil {
		a.Close()
		closeStore()
		return nil, err
	}
	return &SyncScale{t: t, users: users, steady: a, stores: stores, close: closeStore, Cases: slices.Clone(SyncCases)}, nil
}

// Store is the kind of store the syncs write into.
func (s *SyncScale) Store() ScaleStore { return s.stores.Kind }

// Close releases the steady Authenticator and its store.
func (s *SyncScale) Close() { s.steady.Close(); s.close() }

// Run runs one case once and checks it did all its work.
func (s *SyncScale) Run(ctx context.Context, c SyncCase) error {
	run, cleanup, err := s.Prepare(ctx, c)
	if err != nil {
		return err
	}
	defer cleanup()
	return run()
}

// Prepare readies one run of a case (a new, empty store for the first
// syncs, outside what is measured) and returns it, and what to call after
// it.
func (s *SyncScale) Prepare(ctx context.Context, c SyncCase) (run func() error, cleanup func(), err error) {
	switch c {
	case PagedSearchCase:
		return func() error {
			n, err := PagedSearch(s.t, ScalePageSize)
			if err == nil && n < s.users {
				err = fmt.Errorf("benchmarks: the paged search read %d entries of %d", n, s.users)
			}
			return err
		}, func() {}, nil
	case SteadySync:
		return func() error {
			rep, err := s.steady.Sync(ctx, ldapauth.SyncOptions{})
			if err == nil && (rep.DirectoryUsers < s.users || rep.Changes() != 0) {
				err = fmt.Errorf("benchmarks: not a steady-state sync: %d users, %d changes", rep.DirectoryUsers, rep.Changes())
			}
			return err
		}, func() {}, nil
	case FirstSync, FirstSyncPerCall:
		store, closeStore, err := s.stores.New(ctx)
		if err != nil {
			return nil, nil, err
		}
		if c == FirstSyncPerCall {
			store = perCall{store}
		}
		a, err := NewSyncer(s.t, store)
		if err != nil {
			closeStore()
			return nil, nil, err
		}
		return func() error {
				rep, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true})
				if err == nil && (rep.DirectoryUsers < s.users || len(rep.UsersCreated) < s.users) {
					err = fmt.Errorf("benchmarks: first sync: %d users read, %d created", rep.DirectoryUsers, len(rep.UsersCreated))
				}
				return err
			}, func() {
				a.Close()
				closeStore()
			}, nil
	}
	return nil, nil, fmt.Errorf("benchmarks: unknown sync case %q", c)
}

// heapMetric is the bytes of live and not yet swept heap objects, kept up
// to date by the runtime between collections.
const heapMetric = "/memory/classes/heap/objects:bytes"

// PeakHeap runs f and returns its wall time and the peak of the heap while
// it ran, above the heap when it started, sampled every millisecond. Run a
// garbage collection first (runtime.GC, untimed) for the base to be the
// live heap rather than the last cycle's garbage.
func PeakHeap(f func() error) (wall time.Duration, peak uint64, err error) {
	sample := []metrics.Sample{{Name: heapMetric}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	base := read()
	var (
		wg   sync.WaitGroup
		done = make(chan struct{})
		high = base
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		s := []metrics.Sample{{Name: heapMetric}}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				metrics.Read(s)
				if s[0].Value.Kind() == metrics.KindUint64 {
					high = max(high, s[0].Value.Uint64())
				}
			}
		}
	}()
	start := time.Now()
	err = f()
	wall = time.Since(start)
	close(done)
	wg.Wait()
	high = max(high, read())
	return wall, high - base, err
}

// ScaleResult is one case of the sync at scale, over every round.
type ScaleResult struct {
	Server string
	Users  int
	Store  ScaleStore
	Case   SyncCase
	// Wall is the median wall time; WallRatio the median of the per-round
	// ratios to the paged search of the same round.
	Wall      time.Duration
	WallRatio float64
	// PeakHeap is the peak heap of one run in the heap pass (HeapGCPercent)
	// above the live heap before it; PeakRatio its ratio to the paged
	// search's.
	PeakHeap  uint64
	PeakRatio float64
	// Allocs is the median number of heap allocations of one run.
	Allocs float64
	// CPU is the median CPU time of this process (the client) in one run;
	// CPURatio the median of the per-round ratios to the paged search.
	CPU      time.Duration
	CPURatio float64
	// RestingHeap is the live heap before the runs: mostly the MemStore
	// of the steady case, which stands in for the application's database.
	RestingHeap uint64
}

// HeapGCPercent is the GOGC of the heap pass. With the default (100) the
// collector lets garbage grow to the size of the live heap before it
// collects, so a run's peak would mostly say how big the MemStore kept
// for the steady case is; at 10 the peak is within 10% of the live heap
// of what the run itself holds.
const HeapGCPercent = 10

// MeasureSyncScale runs every case of SyncCases rounds times on s, the
// order rotated from round to round, each run after an untimed garbage
// collection (wall time and allocations, at the process's GOGC); then
// once more each with GOGC at HeapGCPercent for the peak heap.
func MeasureSyncScale(ctx context.Context, server string, s *SyncScale, rounds int, progress io.Writer) ([]*ScaleResult, error) {
	type run struct {
		wall   time.Duration
		cpu    time.Duration
		allocs uint64
	}
	runs := map[SyncCase][]run{}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	resting := ms.HeapAlloc
	cases := s.Cases
	for r := range rounds {
		for i := range cases {
			c := cases[(i+r)%len(cases)]
			do, cleanup, err := s.Prepare(ctx, c)
			if err != nil {
				return nil, fmt.Errorf("%s/%d %s %s: %w", server, s.users, s.Store(), c, err)
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			before := ms.Mallocs
			cpu := cpuTime()
			start := time.Now()
			err = do()
			wall := time.Since(start)
			cpu = cpuTime() - cpu
			cleanup()
			if err != nil {
				return nil, fmt.Errorf("%s/%d %s %s: %w", server, s.users, s.Store(), c, err)
			}
			runtime.ReadMemStats(&ms)
			runs[c] = append(runs[c], run{wall, cpu, ms.Mallocs - before})
			if progress != nil {
				fmt.Fprintf(progress, "%s/%d %s round %d %s: %v\n", server, s.users, s.Store(), r+1, c, wall.Round(time.Millisecond))
			}
		}
	}
	peaks := map[SyncCase]uint64{}
	old := debug.SetGCPercent(HeapGCPercent)
	for _, c := range cases {
		do, cleanup, err := s.Prepare(ctx, c)
		if err != nil {
			debug.SetGCPercent(old)
			return nil, fmt.Errorf("%s/%d %s: %w", server, s.users, c, err)
		}
		runtime.GC()
		_, peak, err := PeakHeap(do)
		cleanup()
		if err != nil {
			debug.SetGCPercent(old)
			return nil, fmt.Errorf("%s/%d %s: %w", server, s.users, c, err)
		}
		peaks[c] = peak
		if progress != nil {
			fmt.Fprintf(progress, "%s/%d heap pass %s: peak heap %s\n", server, s.users, c, mib(peak))
		}
	}
	debug.SetGCPercent(old)

	floor := runs[PagedSearchCase]
	var out []*ScaleResult
	for _, c := range cases {
		res := &ScaleResult{Server: server, Users: s.users, Store: s.Store(), Case: c, PeakHeap: peaks[c], RestingHeap: resting}
		var walls, ratios, cpus, cpuRatios, allocs []float64
		for i, x := range runs[c] {
			walls = append(walls, float64(x.wall))
			ratios = append(ratios, float64(x.wall)/float64(floor[i].wall))
			cpus = append(cpus, float64(x.cpu))
			if floor[i].cpu > 0 {
				cpuRatios = append(cpuRatios, float64(x.cpu)/float64(floor[i].cpu))
			}
			allocs = append(allocs, float64(x.allocs))
		}
		res.CPU = time.Duration(median(cpus))
		res.CPURatio = median(cpuRatios)
		res.Wall = time.Duration(median(walls))
		res.WallRatio = median(ratios)
		res.Allocs = median(allocs)
		if f := peaks[PagedSearchCase]; f > 0 {
			res.PeakRatio = float64(res.PeakHeap) / float64(f)
		}
		out = append(out, res)
	}
	return out, nil
}

// ScaleTable writes the sync-at-scale results as a Markdown table.
func ScaleTable(w io.Writer, results []*ScaleResult) {
	fmt.Fprintln(w, "| server | users | store | case | wall time | × paged search | client CPU | × paged search | peak heap | × paged search | allocs | × paged search | resting heap |")
	fmt.Fprintln(w, "|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	floor := map[string]float64{}
	for _, r := range results {
		key := fmt.Sprint(r.Server, r.Users, r.Store)
		if r.Case == PagedSearchCase {
			floor[key] = r.Allocs
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %.2f | %s | %.2f | %s | %.2f | %.2f M | %.2f | %s |\n",
			r.Server, r.Users, r.Store, r.Case, r.Wall.Round(time.Millisecond), r.WallRatio,
			r.CPU.Round(time.Millisecond), r.CPURatio, mib(r.PeakHeap), r.PeakRatio,
			r.Allocs/1e6, r.Allocs/floor[key], mib(r.RestingHeap))
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// MillionEnv, set to 1, adds the sync at MillionUsers users to the Go
// benchmarks of the sync at scale (BenchmarkPagedSearch, BenchmarkSync,
// BenchmarkFirstSync). The runner asks for it by name instead:
// -scale slapd:999999.
const MillionEnv = "LDAPBENCH_MILLION"

// MillionUsers is the largest directory slapdtest generates: with the
// seed's users, a million entries.
const MillionUsers = 999_999
