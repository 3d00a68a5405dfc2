package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// ChangedSync is a sync after about 1% of the directory changed since the
// store was last in step: before it (untimed), ChurnDirectory modifies a
// mapped field (sn, last_name) of 1% of the users, deletes 0.1% and adds
// 0.1% new ones. It runs with CreateUsers, as a scheduled job does.
const ChangedSync SyncCase = "sync-after-1%"

// ChildCases are the cases MeasureScaleInChildren runs, the floor first.
var ChildCases = []SyncCase{PagedSearchCase, SteadySync, ChangedSync, FirstSync}

// childEnv names the environment variable that turns a program calling
// ChildMain into one run of the sync at scale.
const childEnv = "LDAPBENCH_SCALE_CHILD"

// childSpec is one run in a child process.
type childSpec struct {
	URL, SearchBase, ObjectClass, ServiceDN, ServicePassword string
	SyncedGroups                                             []string
	Users                                                    int
	Round                                                    int
	Case                                                     SyncCase
	Store                                                    ScaleStore
	Driver, DSN                                              string // the SQL stores' database
}

// childResult is what a child reports of its run on standard output.
type childResult struct {
	Wall    time.Duration
	CPU     time.Duration // user+system of the run alone
	MaxRSS  int64         // bytes: the peak resident set of the run (see ChildMain)
	Entries int           // users read
	Changes int           // changes written
}

// ChildMain runs one case of the sync at scale when the program was
// started by MeasureScaleInChildren, and reports whether it did: call it
// first in main and exit with code when it returns true.
//
// The work that sets a run up is done first, untimed: for the MemStore, a
// sync that fills the store (the SQL stores are filled by the parent);
// for ChangedSync, the directory changes. Then the child collects its
// garbage, returns the freed memory to the system and resets its peak
// resident set (writing 5 to /proc/self/clear_refs), so that the peak
// resident set it reports afterwards (VmHWM, see peakrss_linux.go) is the
// run's own: the store's resting memory (a filled MemStore) included, the
// setup's garbage and the runner's memory not.
func ChildMain() (code int, child bool) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return 0, false
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "ldapbench child:", err)
		return 2, true
	}
	res, err := runChild(context.Background(), spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ldapbench child: %s/%d %s %s: %v\n", spec.Store, spec.Users, spec.Case, "run", err)
		return 1, true
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1, true
	}
	return 0, true
}

func (spec childSpec) target() *Target {
	return &Target{Server: "slapd", Mode: Plain, URL: spec.URL, SearchBase: spec.SearchBase, ObjectClass: spec.ObjectClass,
		ServiceDN: spec.ServiceDN, ServicePassword: spec.ServicePassword, syncedGroups: spec.SyncedGroups}
}

func runChild(ctx context.Context, spec childSpec) (*childResult, error) {
	t := spec.target()
	var (
		store ldapauth.UserStore
		a     *ldapauth.Authenticator
	)
	if spec.Case != PagedSearchCase {
		if spec.Store == StoreMem {
			store = ldapauth.NewMemStore()
		} else {
			s, err := sqlstore.Open(ctx, spec.Driver, spec.DSN)
			if err != nil {
				return nil, err
			}
			defer s.Close()
			store = s
		}
		var err error
		if a, err = NewSyncer(t, store); err != nil {
			return nil, err
		}
		defer a.Close()
		if spec.Store == StoreMem && spec.Case != FirstSync {
			if _, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true}); err != nil {
				return nil, fmt.Errorf("filling the MemStore: %w", err)
			}
		}
	}
	if spec.Case == ChangedSync {
		if err := ChurnDirectory(spec.URL, spec.Users, spec.Round); err != nil {
			return nil, err
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	if err := resetPeakRSS(); err != nil {
		return nil, err
	}
	if path := os.Getenv(HeapProfileEnv); path != "" && spec.Case != PagedSearchCase {
		stop := profileHeapPeak(fmt.Sprintf("%s.%s.%s", path, spec.Store, spec.Case))
		defer stop()
	}
	cpu := cpuTime()
	start := time.Now()
	res := &childResult{}
	var err error
	switch spec.Case {
	case PagedSearchCase:
		res.Entries, err = PagedSearch(t, ScalePageSize)
		if err == nil && res.Entries < spec.Users {
			err = fmt.Errorf("the paged search read %d entries of %d", res.Entries, spec.Users)
		}
	default:
		var rep *ldapauth.SyncReport
		rep, err = a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: spec.Case != SteadySync})
		if rep != nil {
			res.Entries, res.Changes = rep.DirectoryUsers, rep.Changes()
		}
		switch {
		case err != nil:
		case res.Entries < spec.Users:
			err = fmt.Errorf("the sync read %d users of %d", res.Entries, spec.Users)
		case spec.Case == SteadySync && res.Changes != 0:
			err = fmt.Errorf("not a no-op sync: %d changes", res.Changes)
		case spec.Case == ChangedSync && res.Changes < spec.Users/100:
			err = fmt.Errorf("after 1%% changes, the sync wrote only %d changes", res.Changes)
		case spec.Case == FirstSync && len(rep.UsersCreated) < spec.Users:
			err = fmt.Errorf("first sync: %d users created of %d", len(rep.UsersCreated), spec.Users)
		}
	}
	res.Wall = time.Since(start)
	res.CPU = cpuTime() - cpu
	var rerr error
	if res.MaxRSS, rerr = maxRSS(); err == nil {
		err = rerr
	}
	return res, err
}

// ChurnDirectory changes about 1% of a directory of users generated
// users (slapdtest), differently in each round: it sets the sn of every
// hundredth user (offset by the round) to a value naming the round,
// deletes a thousandth of the generated users (every thousandth, from the
// 500th plus the round) and adds as many new ones past the last (past
// those of earlier rounds). The directory keeps the same number of users;
// the new users are members of readers, as the generated ones. Running a
// round again changes nothing more. readers changes in two modifies a round, not one for each
// user added or deleted: at a million members each modify of it takes
// slapd about a second (README).
func ChurnDirectory(url string, users, round int) error {
	c, err := ldap.DialURL(url)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Bind(slapdtest.AdminDN, slapdtest.AdminPassword); err != nil {
		return err
	}
	for i := 1 + round%100; i <= users; i += 100 {
		m := ldap.NewModifyRequest(slapdtest.UserDN(slapdtest.GeneratedUID(i)), nil)
		m.Replace("sn", []string{fmt.Sprintf("User%06d round %d", i, round)})
		if err := c.Modify(m); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return fmt.Errorf("modify %s: %w", m.DN, err)
		}
	}
	// Each round deletes generated users no round deleted before and adds
	// users no round added before: a DN never comes back. slapd's refint
	// overlay works through a queue in the background, and its task for a
	// deleted DN, run late, would take that DN out of readers again after
	// a later round had added it back (as it did, about 30 of 100 users).
	var deleted, added []int
	for i := 500 + (round-1)%500; i <= users; i += 1000 {
		deleted = append(deleted, i)
	}
	for k := range len(deleted) {
		added = append(added, users+1+(round-1)*len(deleted)+k)
	}
	// The group's membership changes in one modify for all the deleted
	// users and one for all the added ones: slapd reads every value of a
	// group it modifies. Deleting the users while still members would cost
	// one such modify each (memberof-refint removes a deleted entry from
	// its groups).
	dns := func(is []int) []string {
		out := make([]string, len(is))
		for k, i := range is {
			out[k] = slapdtest.UserDN(slapdtest.GeneratedUID(i))
		}
		return out
	}
	if err := modifyMembers(c, dns(deleted), false); err != nil {
		return err
	}
	for _, i := range deleted {
		if err := c.Del(ldap.NewDelRequest(slapdtest.UserDN(slapdtest.GeneratedUID(i)), nil)); err != nil &&
			!ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return fmt.Errorf("delete %s: %w", slapdtest.GeneratedUID(i), err)
		}
	}
	for _, i := range added {
		uid := slapdtest.GeneratedUID(i)
		n := uid[len("user"):]
		add := ldap.NewAddRequest(slapdtest.UserDN(uid), nil)
		add.Attribute("objectClass", []string{"inetOrgPerson"})
		add.Attribute("uid", []string{uid})
		add.Attribute("cn", []string{"Generated User " + n})
		add.Attribute("sn", []string{"User" + n})
		add.Attribute("givenName", []string{"Generated"})
		add.Attribute("mail", []string{uid + "@example.com"})
		if err := c.Add(add); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
			return fmt.Errorf("add %s: %w", uid, err)
		}
	}
	return modifyMembers(c, dns(added), true)
}

// modifyMembers adds dns to readers (add) or removes them from it, in one
// modify. A run that stopped half-way left some of them as wanted: those
// are modified one at a time, which the errors of a single value tell.
func modifyMembers(c *ldap.Conn, dns []string, add bool) error {
	modify := func(vals []string) error {
		m := ldap.NewModifyRequest(slapdtest.GroupDN("readers"), nil)
		if add {
			m.Add("member", vals)
		} else {
			m.Delete("member", vals)
		}
		return c.Modify(m)
	}
	done := func(err error) bool {
		return add && ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) ||
			!add && ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute)
	}
	err := modify(dns)
	if err == nil || !done(err) {
		if err != nil {
			err = fmt.Errorf("modify the members of readers: %w", err)
		}
		return err
	}
	for _, dn := range dns {
		if err := modify([]string{dn}); err != nil && !done(err) {
			return fmt.Errorf("modify the members of readers: %s: %w", dn, err)
		}
	}
	return nil
}

// ChildResult is one case of the sync at scale run in child processes,
// over every round.
type ChildResult struct {
	Users int
	Store ScaleStore
	Case  SyncCase
	// Wall, CPU and MaxRSS are medians over the rounds; the ratios are
	// the medians of the per-round ratios to the paged search of the same
	// round (its own child process).
	Wall, CPU           time.Duration
	WallRatio, CPURatio float64
	MaxRSS              int64
	RSSRatio            float64
	Changes             int // in the last round
	Walls, CPUs         []time.Duration
	MaxRSSes            []int64
}

// MeasureScaleInChildren measures the cases of ChildCases on t (slapd
// with users generated users) into stores of kind, each run in a child
// process (the running program re-executed, which must call ChildMain
// first), rounds times in an order rotated from round to round. The SQL
// stores' steady database is filled once here; each first sync writes
// into a new, empty one.
func MeasureScaleInChildren(ctx context.Context, t *Target, users int, kind ScaleStore, rounds int, progress io.Writer) ([]*ChildResult, error) {
	return MeasureCasesInChildren(ctx, t, users, kind, ChildCases, rounds, progress)
}

// MeasureCasesInChildren is MeasureScaleInChildren for some of
// ChildCases, which must start with PagedSearchCase.
func MeasureCasesInChildren(ctx context.Context, t *Target, users int, kind ScaleStore, cases []SyncCase, rounds int, progress io.Writer) ([]*ChildResult, error) {
	if len(cases) == 0 || cases[0] != PagedSearchCase {
		return nil, fmt.Errorf("benchmarks: the cases %q do not start with %s", cases, PagedSearchCase)
	}
	for _, c := range cases {
		if !slices.Contains(ChildCases, c) {
			return nil, fmt.Errorf("benchmarks: unknown case %q (want one of %q)", c, ChildCases)
		}
	}
	stores, err := NewStores(kind)
	if err != nil {
		return nil, err
	}
	defer stores.Close()
	spec := childSpec{URL: t.URL, SearchBase: t.SearchBase, ObjectClass: t.ObjectClass, ServiceDN: t.ServiceDN,
		ServicePassword: t.ServicePassword, SyncedGroups: t.syncedGroups, Users: users, Store: kind}
	steadyDriver, steadyDSN := "", ""
	if kind != StoreMem {
		if steadyDriver, steadyDSN, err = stores.newDSN(ctx); err != nil {
			return nil, err
		}
		fill := spec
		fill.Case, fill.Driver, fill.DSN = FirstSync, steadyDriver, steadyDSN
		if progress != nil {
			fmt.Fprintf(progress, "filling a %s store with %d users\n", kind, users)
		}
		if _, err := runInChild(ctx, fill); err != nil {
			return nil, fmt.Errorf("filling the %s store: %w", kind, err)
		}
	}
	runs := map[SyncCase][]*childResult{}
	for r := range rounds {
		for i := range cases {
			c := cases[(i+r)%len(cases)]
			one := spec
			one.Case, one.Driver, one.DSN = c, steadyDriver, steadyDSN
			if c == ChangedSync {
				churnRounds++
				one.Round = churnRounds
			}
			if c == FirstSync && kind != StoreMem {
				if one.Driver, one.DSN, err = stores.newDSN(ctx); err != nil {
					return nil, err
				}
			}
			res, err := runInChild(ctx, one)
			if err != nil {
				return nil, fmt.Errorf("slapd/%d %s %s round %d: %w", users, kind, c, r+1, err)
			}
			runs[c] = append(runs[c], res)
			if progress != nil {
				fmt.Fprintf(progress, "slapd/%d %s round %d %s: %v, CPU %v, max RSS %s, %d changes\n", users, kind, r+1, c,
					res.Wall.Round(time.Millisecond), res.CPU.Round(time.Millisecond), mib(uint64(res.MaxRSS)), res.Changes)
			}
		}
	}
	floor := runs[PagedSearchCase]
	var out []*ChildResult
	for _, c := range cases {
		res := &ChildResult{Users: users, Store: kind, Case: c}
		var walls, cpus, rss, wr, cr, rr []float64
		for i, x := range runs[c] {
			res.Walls, res.CPUs, res.MaxRSSes = append(res.Walls, x.Wall), append(res.CPUs, x.CPU), append(res.MaxRSSes, x.MaxRSS)
			walls, cpus, rss = append(walls, float64(x.Wall)), append(cpus, float64(x.CPU)), append(rss, float64(x.MaxRSS))
			wr = append(wr, float64(x.Wall)/float64(floor[i].Wall))
			if floor[i].CPU > 0 {
				cr = append(cr, float64(x.CPU)/float64(floor[i].CPU))
			}
			rr = append(rr, float64(x.MaxRSS)/float64(floor[i].MaxRSS))
			res.Changes = x.Changes
		}
		res.Wall, res.CPU, res.MaxRSS = time.Duration(median(walls)), time.Duration(median(cpus)), int64(median(rss))
		res.WallRatio, res.CPURatio, res.RSSRatio = median(wr), median(cr), median(rr)
		out = append(out, res)
	}
	return out, nil
}

// HeapProfileEnv names a file: when set, each child run but the paged
// search writes the heap profile (pprof) of the highest live heap it
// reaches, sampled every 20 ms, to see what holds the peak RSS, to that
// name followed by "." store "." case (file.sqlite.sync), so that one
// run's cases do not overwrite each other's profile.
const HeapProfileEnv = "LDAPBENCH_HEAP_PROFILE"

// profileHeapPeak writes the heap profile to path each time the heap in
// use after a collection reaches a new high, until stop is called.
func profileHeapPeak(path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var high uint64
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= high+high/20 {
				continue
			}
			high = ms.HeapInuse
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// churnRounds counts the ChangedSync runs of this process: each changes
// the directory differently from the one before, whatever the store.
var churnRounds int

// runInChild runs spec in a child process and returns what it reported.
func runInChild(ctx context.Context, spec childSpec) (*childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var res childResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("the child's report %q: %w", stdout.String(), err)
	}
	if res.MaxRSS <= 0 {
		return nil, errors.New("the child reported no maximum resident set")
	}
	return &res, nil
}

// newDSN makes a new, empty database for the SQL stores and returns its
// driver and DSN.
func (st *Stores) newDSN(ctx context.Context) (driver, dsn string, err error) {
	st.n++
	switch st.Kind {
	case StoreSQLite:
		return sqlstore.DriverSQLite, filepath.Join(st.dir, fmt.Sprintf("sync-%d.db", st.n)), nil
	case StorePostgres:
		dsn, err := st.pg.CreateDatabase(ctx)
		return sqlstore.DriverPostgres, dsn, err
	}
	return "", "", fmt.Errorf("benchmarks: %s has no database", st.Kind)
}

// ChildTable writes results as a Markdown table.
func ChildTable(w io.Writer, results []*ChildResult) {
	fmt.Fprintln(w, "| users | store | case | wall | × paged search | client CPU | × paged search | peak RSS | × paged search | changes | walls (rounds) |")
	fmt.Fprintln(w, "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, r := range results {
		var walls []string
		for _, x := range r.Walls {
			walls = append(walls, x.Round(10*time.Millisecond).String())
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %.2f | %s | %.2f | %s | %.2f | %d | %s |\n",
			r.Users, r.Store, r.Case, r.Wall.Round(time.Millisecond), r.WallRatio, r.CPU.Round(time.Millisecond), r.CPURatio,
			mib(uint64(r.MaxRSS)), r.RSSRatio, r.Changes, strings.Join(walls, ", "))
	}
}
