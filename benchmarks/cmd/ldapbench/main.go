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
// -ldapauth 'ldapauth-pool:LDAP_AUTH_POOL_SIZE=8' (repeatable; add ",svc"
// for the service account).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
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
	benchmarks.ServeIfChild()

	var extra variants
	rounds := flag.Int("rounds", 5, "interleaved rounds")
	duration := flag.Duration("duration", 500*time.Millisecond, "how long each contender runs in each round")
	workers := flag.String("workers", "1,8", "numbers of concurrent workers, comma-separated")
	servers := flag.String("servers", "glauth,slapd", "servers to measure on, comma-separated")
	modes := flag.String("modes", "plain,starttls,ldaps", "transports, comma-separated")
	only := flag.String("contenders", "", "contenders to measure, comma-separated (default all; the floor is always measured)")
	flag.Var(&extra, "ldapauth", "an extra ldapauth variant, name:LDAP_...=VALUE,...[,svc] (repeatable)")
	flag.Parse()

	if err := run(*rounds, *duration, *workers, *servers, *modes, *only, extra); err != nil {
		fmt.Fprintln(os.Stderr, "ldapbench:", err)
		os.Exit(1)
	}
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
	printMachine()
	fmt.Printf("Command: go run ./cmd/ldapbench %s\n\n", strings.Join(os.Args[1:], " "))

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
	fmt.Printf("Machine: %s, %d CPUs (GOMAXPROCS %d), %s %s/%s\n",
		model, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
