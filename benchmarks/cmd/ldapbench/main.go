// Command ldapbench measures ldapauth's logins against the protocol floor
// and the Go peers, on the same servers in one run, and prints the table of
// benchmarks/README.md.
//
// Every contender is first checked for correctness on every target (right
// password accepted, wrong refused, mail read back); those that fail are
// listed with the reason and left out of the measurement. The others run in
// interleaved rounds, so machine drift falls on all of them alike:
//
//	cd benchmarks && go run ./cmd/ldapbench -rounds 5 -duration 500ms
//
// A real slapd is used when installed (apt-get install slapd ldap-utils).
// Extra ldapauth configurations are measured with -ldapauth, for example
// -ldapauth 'ldapauth-pool2:LDAP_AUTH_POOL_SIZE=2' (repeatable; add ",svc"
// for the service account; only variables ldapauth's LoadConfig reads are
// accepted, and not those the target sets).
//
// The sync at scale (ldapauth's Sync against a raw paged search of the same
// entries, same server and page size) runs with -scale, for example
//
//	go run ./cmd/ldapbench -logins=false -scale slapd:10000,slapd:100000,glauth:10000 -scale-rounds 3
//
// into the stores of -scale-stores (memstore, sqlite: examples/sqlstore on a
// file in a temporary directory, postgres: examples/sqlstore on a server
// started for the run), with -scale-per-call adding the first sync written
// one call per change, as before batched writes:
//
//	go run ./cmd/ldapbench -logins=false -scale slapd:10000 -scale-stores memstore,sqlite,postgres -scale-per-call
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldapauth/ldapauth/benchmarks"
)

type variants []benchmarks.LDAPAuthVariant

func (v *variants) String() string { return "" }

func (v *variants) Set(s string) error {
	x, err := benchmarks.ParseLDAPAuthVariant(s)
	if err != nil {
		return err
	}
	*v = append(*v, x)
	return nil
}

func main() {
	if code, child := benchmarks.ChildMain(); child { // one run of -scale-children
		os.Exit(code)
	}
	benchmarks.ServeIfChild()

	var extra variants
	rounds := flag.Int("rounds", 5, "interleaved rounds")
	duration := flag.Duration("duration", 500*time.Millisecond, "how long each contender runs in each round")
	workers := flag.String("workers", "1,8", "numbers of concurrent workers, comma-separated")
	servers := flag.String("servers", "glauth,slapd", "servers to measure on, comma-separated")
	modes := flag.String("modes", "plain,starttls,ldaps", "transports, comma-separated")
	only := flag.String("contenders", "", "contenders to measure, comma-separated (default all; the floor is always measured)")
	flag.Var(&extra, "ldapauth", "an extra ldapauth variant, name:LDAP_...=VALUE,...[,svc] (repeatable)")
	logins := flag.Bool("logins", true, "measure the logins")
	scale := flag.String("scale", "", "sync at scale: server:users pairs, comma-separated (e.g. slapd:10000,slapd:100000,glauth:10000)")
	scaleRounds := flag.Int("scale-rounds", 3, "interleaved rounds of the sync at scale")
	scaleStores := flag.String("scale-stores", "memstore", "sync at scale: stores, comma-separated (memstore, sqlite, postgres)")
	scaleChildren := flag.Bool("scale-children", false, "sync at scale: run each sync and paged search in a child process (wall, CPU and peak RSS of that process), with the no-op sync, the sync after 1% changes and the first sync; slapd only")
	scaleCases := flag.String("scale-cases", "", "sync at scale, -scale-children: the cases, comma-separated, paged-search first (default all: paged-search,sync,sync-after-1%,first-sync)")
	scalePerCall := flag.Bool("scale-per-call", false, "sync at scale: also the first sync written one call per change (no batches)")
	watch := flag.Int("watch", 0, "watch-mode latency: users in slapd with syncprov (0: not measured); deletes -watch-deletions of them one at a time while WatchChanges runs into a -watch-store")
	watchDeletions := flag.Int("watch-deletions", 100, "watch-mode latency: users deleted, one at a time")
	watchStore := flag.String("watch-store", "sqlite", "watch-mode latency: the store (memstore, sqlite, postgres)")
	watchLog := flag.Int("watch-sessionlog", 0, "watch-mode latency: syncprov-sessionlog (0: none)")
	failover := flag.Duration("failover", 0, "failover: run each scenario of -failover-scenarios this long in each of -rounds rounds, in each mode of -modes")
	failoverTimeout := flag.Duration("failover-timeout", 2*time.Second, "failover: the connect and receive timeouts")
	failoverInterval := flag.Duration("failover-interval", 0, "failover: each worker starts a login this often (0: flat out)")
	failoverHedge := flag.Duration("failover-hedge", 0, "failover: Config.HedgeDelay of the hedged scenario (0: ldapauth's default)")
	failoverScenarios := flag.String("failover-scenarios", strings.Join(benchmarks.FailoverScenarios, ","), "failover: the scenarios to run")
	flag.Parse()

	printMachine()
	fmt.Printf("Command: go run ./cmd/ldapbench %s\n\n", strings.Join(os.Args[1:], " "))
	if *logins {
		if err := run(*rounds, *duration, *workers, *servers, *modes, *only, extra); err != nil {
			fmt.Fprintln(os.Stderr, "ldapbench:", err)
			os.Exit(1)
		}
	}
	if *scale != "" {
		if err := runScale(*scale, *scaleStores, *scaleRounds, *scalePerCall, *scaleChildren, *scaleCases); err != nil {
			fmt.Fprintln(os.Stderr, "ldapbench:", err)
			os.Exit(1)
		}
	}
	if *watch > 0 {
		r, err := benchmarks.MeasureWatchLatency(context.Background(), benchmarks.WatchOptions{
			Users: *watch, Deletions: *watchDeletions, Store: benchmarks.ScaleStore(*watchStore), SessionLog: *watchLog}, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ldapbench:", err)
			os.Exit(1)
		}
		fmt.Printf("## Watch mode: a user deleted in the directory, until the watcher's run that removed it from the store reported\n\n")
		benchmarks.WatchTable(os.Stdout, r)
		fmt.Println()
	}
	if *failover > 0 {
		if err := runFailover(*failover, *failoverTimeout, *failoverInterval, *failoverHedge, *rounds, *workers, *modes, *failoverScenarios); err != nil {
			fmt.Fprintln(os.Stderr, "ldapbench:", err)
			os.Exit(1)
		}
	}
	printLoad("at the end")
}

// runScale measures the sync at scale on each server:users pair of list.
func runScale(list, storeList string, rounds int, perCall, children bool, caseList string) error {
	type size struct {
		server string
		users  int
	}
	var sizes []size
	for f := range strings.SplitSeq(list, ",") {
		server, n, ok := strings.Cut(strings.TrimSpace(f), ":")
		users, err := strconv.Atoi(n)
		if !ok || err != nil || users < 1 || (server != "slapd" && server != "glauth") {
			return fmt.Errorf("-scale: %q is not slapd:N or glauth:N", f)
		}
		sizes = append(sizes, size{server, users})
	}
	var kinds []benchmarks.ScaleStore
	for f := range strings.SplitSeq(storeList, ",") {
		kinds = append(kinds, benchmarks.ScaleStore(strings.TrimSpace(f)))
	}
	ctx := context.Background()
	if children {
		var results []*benchmarks.ChildResult
		for _, sz := range sizes {
			if sz.server != "slapd" {
				return fmt.Errorf("-scale-children: %s: slapd only", sz.server)
			}
			fmt.Fprintf(os.Stderr, "starting %s with %d users\n", sz.server, sz.users)
			t, stop, err := benchmarks.StartScaleTarget(sz.server, sz.users)
			if err != nil {
				return err
			}
			for _, kind := range kinds {
				cases := benchmarks.ChildCases
				if caseList != "" {
					cases = nil
					for f := range strings.SplitSeq(caseList, ",") {
						cases = append(cases, benchmarks.SyncCase(strings.TrimSpace(f)))
					}
				}
				rs, err := benchmarks.MeasureCasesInChildren(ctx, t, sz.users, kind, cases, rounds, os.Stderr)
				if err != nil {
					stop()
					return err
				}
				results = append(results, rs...)
			}
			stop()
		}
		fmt.Printf("## Sync at scale, each run in a child process (slapd; %d interleaved rounds; page size %d; ratios to the raw paged search of the same round)\n\n", rounds, benchmarks.ScalePageSize)
		benchmarks.ChildTable(os.Stdout, results)
		fmt.Println()
		return nil
	}
	var results []*benchmarks.ScaleResult
	for _, sz := range sizes {
		fmt.Fprintf(os.Stderr, "starting %s with %d users\n", sz.server, sz.users)
		t, stop, err := benchmarks.StartScaleTarget(sz.server, sz.users)
		if err != nil {
			return err
		}
		for _, kind := range kinds {
			rs, err := measureStore(ctx, t, sz.server, sz.users, kind, rounds, perCall)
			if err != nil {
				stop()
				return err
			}
			results = append(results, rs...)
		}
		stop()
	}
	fmt.Printf("## Sync at scale (%d interleaved rounds; page size %d; ratios to the raw paged search of the same rounds)\n\n", rounds, benchmarks.ScalePageSize)
	benchmarks.ScaleTable(os.Stdout, results)
	fmt.Println()
	return nil
}

// measureStore measures the sync at scale of t into stores of kind.
func measureStore(ctx context.Context, t *benchmarks.Target, server string, users int, kind benchmarks.ScaleStore, rounds int, perCall bool) ([]*benchmarks.ScaleResult, error) {
	stores, err := benchmarks.NewStores(kind)
	if err != nil {
		return nil, err
	}
	defer stores.Close()
	fmt.Fprintf(os.Stderr, "filling a %s store with %d users\n", kind, users)
	s, err := benchmarks.PrepareSyncScaleInto(ctx, t, users, stores)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if perCall {
		s.Cases = append(s.Cases, benchmarks.FirstSyncPerCall)
	}
	return benchmarks.MeasureSyncScale(ctx, server, s, rounds, os.Stderr)
}

func run(rounds int, duration time.Duration, workerList, serverList, modeList, only string, extra variants) error {
	var ws []int
	for f := range strings.SplitSeq(workerList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-workers: %q is not a positive number", f)
		}
		ws = append(ws, n)
	}
	wanted := func(list, x string) bool {
		for f := range strings.SplitSeq(list, ",") {
			if strings.TrimSpace(f) == x {
				return true
			}
		}
		return false
	}

	srv, err := benchmarks.StartServers()
	if err != nil {
		return err
	}
	defer srv.Close()
	if srv.SlapdErr != nil {
		fmt.Fprintf(os.Stderr, "no slapd: %v\n", srv.SlapdErr)
	}

	all := benchmarks.Contenders(append(benchmarks.DefaultLDAPAuthVariants(), extra...))
	ctx := context.Background()

	fmt.Println("## Contenders")
	fmt.Println()
	for _, c := range all {
		fmt.Printf("- %s: %s\n", c.Name, c.Setup)
	}
	fmt.Println()

	fmt.Println("## Correctness (right password accepted, wrong refused, mail read back)")
	fmt.Println()
	type job struct {
		t  *benchmarks.Target
		cs []benchmarks.Contender
	}
	var jobs []job
	for _, t := range srv.Targets {
		if !wanted(serverList, t.Server) || !wanted(modeList, string(t.Mode)) {
			continue
		}
		j := job{t: t}
		var failed []string
		for _, c := range all {
			if only != "" && c.Name != benchmarks.Floor && !wanted(only, c.Name) {
				continue
			}
			if err := benchmarks.Check(ctx, c, t); err != nil {
				if c.Name == benchmarks.Floor {
					return fmt.Errorf("the floor fails on %s: %w", t.Name(), err)
				}
				failed = append(failed, fmt.Sprintf("  - %s: %v", c.Name, err))
				continue
			}
			j.cs = append(j.cs, c)
		}
		names := make([]string, len(j.cs))
		for i, c := range j.cs {
			names[i] = c.Name
		}
		fmt.Printf("- %s: correct: %s\n", t.Name(), strings.Join(names, ", "))
		if len(failed) > 0 {
			fmt.Printf("  fail, not measured:\n%s\n", strings.Join(failed, "\n"))
		}
		jobs = append(jobs, j)
	}
	fmt.Println()

	var results []*benchmarks.Result
	for _, j := range jobs {
		rs, err := benchmarks.Measure(ctx, j.t, j.cs, benchmarks.Options{
			Workers: ws, Rounds: rounds, Duration: duration, Progress: os.Stderr,
		})
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	fmt.Printf("## Logins (%d interleaved rounds of %v per contender; ratios to the floor of the same rounds)\n\n", rounds, duration)
	benchmarks.Table(os.Stdout, results)
	fmt.Println()
	return nil
}

// printMachine prints what the figures were measured on.
func printMachine() {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.Atoi(f[1]); err == nil {
					mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	slapd := "no slapd"
	for _, exe := range []string{"slapd", "/usr/sbin/slapd"} {
		if out, err := exec.Command(exe, "-VV").CombinedOutput(); err == nil || len(out) > 0 {
			if _, v, ok := strings.Cut(string(out), "slapd "); ok {
				slapd = "OpenLDAP slapd " + strings.Fields(v)[0]
				break
			}
		}
	}
	fmt.Printf("Machine: %s, %d CPUs (GOMAXPROCS %d), %s, %s, %s %s/%s, %s\n",
		model, runtime.NumCPU(), runtime.GOMAXPROCS(0), mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, slapd)
	printLoad("at the start")
}

// printLoad prints the load average, which says how quiet the machine was.
func printLoad(when string) {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			fmt.Printf("Load average %s: %s %s %s (1, 5, 15 min)\n", when, f[0], f[1], f[2])
		}
	}
}

// runFailover measures the failover scenarios in each mode, with the
// largest number of workers of -workers.
func runFailover(d, timeout, interval, hedge time.Duration, rounds int, workerList, modeList, scenarioList string) error {
	workers := 0
	for _, w := range strings.Split(workerList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			return fmt.Errorf("-workers: %q is not a positive number", w)
		}
		workers = max(workers, n)
	}
	var scenarios []string
	for _, s := range strings.Split(scenarioList, ",") {
		if s = strings.TrimSpace(s); !slices.Contains(benchmarks.FailoverScenarios, s) {
			return fmt.Errorf("-failover-scenarios: %q is not one of %q", s, benchmarks.FailoverScenarios)
		}
		scenarios = append(scenarios, s)
	}
	fmt.Printf("## Failover: two servers, the first %s; %d workers (a login every %s each; 0: flat out), %d rounds of %s per scenario, timeouts %s, hedge delay %s (0: the default)\n\n",
		strings.Join(scenarios, " / "), workers, interval, rounds, d, timeout, hedge)
	var all []benchmarks.FailoverResult
	for _, m := range strings.Split(modeList, ",") {
		rs, err := benchmarks.MeasureFailover(context.Background(), benchmarks.Mode(strings.TrimSpace(m)),
			benchmarks.FailoverOptions{Workers: workers, Duration: d, Timeout: timeout, Rounds: rounds, Interval: interval,
				HedgeDelay: hedge, Scenarios: scenarios})
		if err != nil {
			return err
		}
		all = append(all, rs...)
	}
	benchmarks.FailoverTable(os.Stdout, all)
	fmt.Println()
	return nil
}
