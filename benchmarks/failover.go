package benchmarks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
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
	Scenario string // one of FailoverScenarios
	Mode     Mode
	Logins   int // logins that succeeded
	Failed   int // logins that failed
	// FailedAfterFirst counts the failed logins that started after the
	// run's first failure had been returned: the logins a server already known
	// dead cost. (Those started before it, as many as the workers, all met
	// the server before anyone knew.)
	FailedAfterFirst int
	P50, P99, Max    time.Duration // over every login, failed ones included
	// FaultyBinds counts the binds that reached the faulty first server
	// (those of the logins in flight when it hung; never one after).
	FaultyBinds int64
	// Slow counts the logins that took SlowLogin or longer, failed ones
	// included: those that met the faulty server.
	Slow int
}

// SlowLogin is the duration from which a login counts as slow in
// FailoverResult.Slow: 100 times a healthy pooled login on 127.0.0.1, a
// tenth of the hedge delay ldapauth defaults to.
const SlowLogin = 100 * time.Millisecond

// FailoverOptions are the settings of [MeasureFailover].
type FailoverOptions struct {
	Workers  int           // concurrent logins
	Duration time.Duration // of each scenario
	// Timeout is both the connect and the receive timeout. A hung server
	// costs a login that meets it this long.
	Timeout time.Duration
	Rounds  int // of each scenario, alternating
	// Interval paces each worker: one login started every Interval (0: one
	// after the other). At a real site's pace a failed login weighs on the
	// p99; flat out, thousands of fast logins dilute it.
	Interval time.Duration
	// HedgeDelay is Config.HedgeDelay in the scenarios that hedge (0:
	// ldapauth's default).
	HedgeDelay time.Duration
	// Scenarios to run, from FailoverScenarios (nil: all).
	Scenarios []string
}

// The failover scenarios: the first of two servers is
const (
	Healthy = "healthy" // healthy too
	// HungPrimary accepts connections and never answers: with TLS the
	// handshake never completes; with plain LDAP the connect completes
	// and the bind is never answered.
	HungPrimary = "hung primary"
	// BlackholedPrimary accepts nothing (a connect never completes, as
	// with a host down or a firewall dropping packets), with hedging off:
	// a connect to the second server starts only when the first one's
	// connect timeout has passed.
	BlackholedPrimary = "black-holed primary (no hedge)"
	// BlackholedHedged is BlackholedPrimary with hedged connects.
	BlackholedHedged = "black-holed primary (hedged)"
)

// FailoverScenarios lists the scenarios in the order they are reported.
var FailoverScenarios = []string{Healthy, HungPrimary, BlackholedPrimary, BlackholedHedged}

// MeasureFailover measures logins with two servers, both the in-process
// test directory behind fault proxies on 127.0.0.1, in mode, in each of
// opts.Scenarios (see FailoverScenarios). The scenarios alternate for opts.Rounds rounds of opts.Duration each, in
// an order rotated from round to round, so that machine drift falls on
// both alike; each run is a new Authenticator (default pool, real clock,
// so the back-off periods pass during the run) with logins from
// opts.Workers goroutines.
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
	scheme, hostPort, _ := strings.Cut(target, "://")

	scenarios := opts.Scenarios
	if len(scenarios) == 0 {
		scenarios = FailoverScenarios
	}
	samples := make([][][]login, len(scenarios)) // by scenario, the runs
	faultyBinds := make([]int64, len(scenarios))
	for round := range max(opts.Rounds, 1) {
		for k := range scenarios {
			i := (k + round) % len(scenarios)
			first, err := faultproxy.New(hostPort)
			if err != nil {
				return nil, err
			}
			second, err := faultproxy.New(hostPort)
			if err != nil {
				first.Close()
				return nil, err
			}
			firstAddr := first.Addr()
			hedge, stop := time.Duration(-1), func() {}
			switch scenarios[i] {
			case Healthy:
			case HungPrimary:
				first.SetMode(faultproxy.Blackhole)
			case BlackholedHedged:
				hedge = opts.HedgeDelay
				fallthrough
			case BlackholedPrimary:
				u, err := faultproxy.NewUnreachable()
				if err != nil {
					first.Close()
					second.Close()
					return nil, err
				}
				stop = u.Close
				firstAddr = u.Addr()
			default:
				first.Close()
				second.Close()
				return nil, fmt.Errorf("no failover scenario %q", scenarios[i])
			}
			ls, err := runFailover(ctx, srv, mode, []string{scheme + "://" + firstAddr, scheme + "://" + second.Addr()}, opts, hedge)
			if scenarios[i] != Healthy {
				faultyBinds[i] += first.Binds()
			}
			stop()
			first.Close()
			second.Close()
			if err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], ls)
		}
	}
	var results []FailoverResult
	for i, sc := range scenarios {
		r, err := summarizeFailover(samples[i])
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", mode, sc, err)
		}
		r.Scenario, r.Mode, r.FaultyBinds = sc, mode, faultyBinds[i]
		results = append(results, r)
	}
	return results, nil
}

// login is one login of a failover run.
type login struct {
	at  time.Time
	d   time.Duration
	err error
}

// runFailover runs the logins of one scenario on a new Authenticator and
// returns them in the order they started.
func runFailover(ctx context.Context, srv *ldaptest.Server, mode Mode, urls []string, opts FailoverOptions, hedge time.Duration) ([]login, error) {
	env := srv.Env()
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return nil, err
	}
	cfg.URLs = urls
	cfg.UseTLS = mode == StartTLS
	cfg.TLSConfig = &tls.Config{RootCAs: srv.CAPool(), MinVersion: tls.VersionTLS12}
	cfg.ConnectTimeout, cfg.ReceiveTimeout = opts.Timeout, opts.Timeout
	cfg.HedgeDelay = hedge
	a, err := ldapauth.New(cfg)
	if err != nil {
		return nil, err
	}
	defer a.Close()

	var mu sync.Mutex
	var all []login
	end := time.Now().Add(opts.Duration)
	var wg sync.WaitGroup
	for w := range opts.Workers {
		wg.Go(func() {
			users := []string{"alice", "bob", "carol"}
			var mine []login
			next := time.Now()
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				if opts.Interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(opts.Interval)
				}
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
		return nil, err
	}
	slices.SortFunc(all, func(x, y login) int { return x.at.Compare(y.at) })
	return all, nil
}

// summarizeFailover counts the logins of every run of a scenario and
// takes the percentiles over all of them.
func summarizeFailover(runs [][]login) (FailoverResult, error) {
	var r FailoverResult
	var durations []time.Duration
	for _, run := range runs {
		var known time.Time // when the run's first failure was returned
		for _, l := range run {
			durations = append(durations, l.d)
			if l.d >= SlowLogin {
				r.Slow++
			}
			switch {
			case l.err == nil:
				r.Logins++
			case !errors.Is(l.err, ldapauth.ErrUnavailable):
				return r, fmt.Errorf("unexpected error: %w", l.err)
			default:
				if !known.IsZero() && l.at.After(known) {
					r.FailedAfterFirst++
				}
				if known.IsZero() {
					known = l.at.Add(l.d)
				}
				r.Failed++
			}
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
	fmt.Fprintf(w, "| mode | scenario | logins ok | failed | failed after the first | binds to the first server (faulty) | over %s | p50 | p99 | max | p99 / healthy p99 |\n", SlowLogin)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	healthy := map[Mode]time.Duration{}
	for _, r := range results {
		ratio := "1.00x"
		if r.Scenario == Healthy {
			healthy[r.Mode] = r.P99
		} else if h := healthy[r.Mode]; h > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.P99)/float64(h))
		}
		binds := "-"
		if r.Scenario != Healthy {
			binds = strconv.FormatInt(r.FaultyBinds, 10)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %s | %d | %s | %s | %s | %s |\n", r.Mode, r.Scenario, r.Logins, r.Failed,
			r.FailedAfterFirst, binds, r.Slow, roundDur(r.P50), roundDur(r.P99), roundDur(r.Max), ratio)
	}
}
