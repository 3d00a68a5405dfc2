package benchmarks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// FailoverResult is one failover scenario: how the logins of all workers
// fared over the run.
type FailoverResult struct {
	Scenario string // "healthy" or "hung primary"
	Mode     Mode
	Logins   int // logins that succeeded
	Failed   int // logins that failed
	// FailedAfterFirst counts the failed logins that started after the
	// first failure had been returned: the logins a server already known
	// dead cost. (Those started before it, as many as the workers, all met
	// the server before anyone knew.)
	FailedAfterFirst int
	P50, P99, Max    time.Duration // over every login, failed ones included
}

// FailoverOptions are the settings of [MeasureFailover].
type FailoverOptions struct {
	Workers  int           // concurrent logins
	Duration time.Duration // of each scenario
	// Timeout is both the connect and the receive timeout. A hung server
	// costs a login that meets it this long.
	Timeout time.Duration
}

// MeasureFailover measures logins with two servers, both the in-process
// test directory behind fault proxies on 127.0.0.1, in mode: first both
// healthy, then with the first one hung (it accepts connections and never
// answers). The logins run from opts.Workers goroutines for opts.Duration
// on one Authenticator with the default pool, on the real clock, so the
// back-off periods (1 s doubling to 30 s) pass during the run.
func MeasureFailover(ctx context.Context, mode Mode, opts FailoverOptions) ([]FailoverResult, error) {
	srv, err := ldaptest.NewServer(ldaptest.DemoDirectory())
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	target := srv.URL()
	if mode == LDAPS {
		target = srv.LDAPSURL()
	}
	_, hostPort, _ := strings.Cut(target, "://")
	scheme, _, _ := strings.Cut(target, "://")

	var results []FailoverResult
	for _, scenario := range []string{"healthy", "hung primary"} {
		first, err := faultproxy.New(hostPort)
		if err != nil {
			return nil, err
		}
		second, err := faultproxy.New(hostPort)
		if err != nil {
			first.Close()
			return nil, err
		}
		if scenario == "hung primary" {
			first.SetMode(faultproxy.Blackhole)
		}
		r, err := runFailover(ctx, srv, mode, []string{scheme + "://" + first.Addr(), scheme + "://" + second.Addr()}, opts)
		first.Close()
		second.Close()
		if err != nil {
			return nil, err
		}
		r.Scenario = scenario
		results = append(results, r)
	}
	return results, nil
}

func runFailover(ctx context.Context, srv *ldaptest.Server, mode Mode, urls []string, opts FailoverOptions) (FailoverResult, error) {
	env := srv.Env()
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return FailoverResult{}, err
	}
	cfg.URLs = urls
	cfg.UseTLS = mode == StartTLS
	cfg.TLSConfig = &tls.Config{RootCAs: srv.CAPool(), MinVersion: tls.VersionTLS12}
	cfg.ConnectTimeout, cfg.ReceiveTimeout = opts.Timeout, opts.Timeout
	a, err := ldapauth.New(cfg)
	if err != nil {
		return FailoverResult{}, err
	}
	defer a.Close()

	type login struct {
		at  time.Time
		d   time.Duration
		err error
	}
	var mu sync.Mutex
	var all []login
	end := time.Now().Add(opts.Duration)
	var wg sync.WaitGroup
	for w := range opts.Workers {
		wg.Go(func() {
			users := []string{"alice", "bob", "carol"}
			var mine []login
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				name := users[(w+i)%len(users)]
				start := time.Now()
				_, err := a.Authenticate(ctx, name, name+"-password")
				mine = append(mine, login{start, time.Since(start), err})
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return FailoverResult{}, err
	}

	r := FailoverResult{Mode: mode}
	slices.SortFunc(all, func(x, y login) int { return x.at.Compare(y.at) })
	durations := make([]time.Duration, 0, len(all))
	var known time.Time // when the first failure was returned
	for _, l := range all {
		durations = append(durations, l.d)
		switch {
		case l.err == nil:
			r.Logins++
		case !errors.Is(l.err, ldapauth.ErrUnavailable):
			return r, fmt.Errorf("%s: unexpected error: %w", mode, l.err)
		default:
			if !known.IsZero() && l.at.After(known) {
				r.FailedAfterFirst++
			}
			if r.Failed == 0 {
				known = l.at.Add(l.d)
			}
			r.Failed++
		}
	}
	slices.Sort(durations)
	if len(durations) > 0 {
		r.P50, r.P99, r.Max = percentile(durations, 0.50), percentile(durations, 0.99), durations[len(durations)-1]
	}
	return r, nil
}

// FailoverTable prints the failover results, each hung-primary row with
// its p99's ratio to the healthy p99 of the same mode.
func FailoverTable(w io.Writer, results []FailoverResult) {
	fmt.Fprintln(w, "| mode | scenario | logins ok | failed | failed after the first | p50 | p99 | max | p99 / healthy p99 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	healthy := map[Mode]time.Duration{}
	for _, r := range results {
		ratio := "1.00x"
		if r.Scenario == "healthy" {
			healthy[r.Mode] = r.P99
		} else if h := healthy[r.Mode]; h > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.P99)/float64(h))
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %s | %s | %s | %s |\n", r.Mode, r.Scenario, r.Logins, r.Failed,
			r.FailedAfterFirst, roundDur(r.P50), roundDur(r.P99), roundDur(r.Max), ratio)
	}
}
