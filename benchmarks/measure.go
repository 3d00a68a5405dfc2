package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Check logs t.User in with the right password (accepted, mail read back),
// the wrong one (refused), and the right one again (still accepted: the
// refusal broke nothing and locked nothing). It returns nil if the
// contender is correct against t.
func Check(ctx context.Context, c Contender, t *Target) (err error) {
	s, err := c.Open(t)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	login, err := s.Worker()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	right := func(what string) error {
		mail, err := login(ctx, t.User, t.Password)
		if err != nil {
			return fmt.Errorf("%s: right password refused: %w", what, err)
		}
		if mail != t.Mail {
			return fmt.Errorf("%s: mail read back %q, want %q", what, mail, t.Mail)
		}
		return nil
	}
	if err := right("first login"); err != nil {
		return err
	}
	if _, err := login(ctx, t.User, t.WrongPassword); err == nil {
		return errors.New("wrong password accepted")
	}
	return right("login after a refused one")
}

// Options configures Measure.
type Options struct {
	// Workers lists the numbers of concurrent workers; default 1 and 8.
	Workers []int
	// Rounds is how many times each contender runs; default 5.
	Rounds int
	// Duration is how long each contender runs in each round; default
	// 500ms.
	Duration time.Duration
	// Progress, if set, receives a line per round.
	Progress io.Writer
}

func (o *Options) defaults() {
	if len(o.Workers) == 0 {
		o.Workers = []int{1, 8}
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.Duration <= 0 {
		o.Duration = 500 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// sample is one contender's run in one round.
type sample struct {
	logins         int
	elapsed        time.Duration
	mallocs, bytes uint64
	latencies      []time.Duration
}

// Result is one contender's figures on one target with one number of
// workers. Ratios are to the floor's figures of the same target and
// workers, measured in the same rounds.
type Result struct {
	Target    string
	Contender string
	Workers   int

	// LoginsPerSec is the median over rounds; LoginsRatio is the median
	// over rounds of this contender's rate divided by the floor's.
	LoginsPerSec, LoginsRatio float64
	// P50 and P99 are over every login of every round.
	P50, P99           time.Duration
	P50Ratio, P99Ratio float64
	// AllocsPerLogin and BytesPerLogin are the process's allocations
	// during the runs divided by the logins.
	AllocsPerLogin, BytesPerLogin float64
	AllocsRatio, BytesRatio       float64

	samples []sample
}

// Measure runs the contenders against t, each with every number of
// workers, in interleaved rounds: in each round every contender runs for
// opts.Duration, in an order rotated from round to round. Contenders must
// include the floor. It returns one Result per contender and number of
// workers.
func Measure(ctx context.Context, t *Target, cs []Contender, opts Options) ([]*Result, error) {
	opts.defaults()
	if !slices.ContainsFunc(cs, func(c Contender) bool { return c.Name == Floor }) {
		return nil, errors.New("benchmarks: Measure needs the floor among the contenders")
	}
	var out []*Result
	for _, w := range opts.Workers {
		rs, err := measureWorkers(ctx, t, cs, w, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func measureWorkers(ctx context.Context, t *Target, cs []Contender, w int, opts Options) ([]*Result, error) {
	type open struct {
		c      Contender
		s      *Session
		logins []LoginFunc
		r      *Result
	}
	var opened []*open
	defer func() {
		for _, o := range opened {
			o.s.Close()
		}
	}()
	for _, c := range cs {
		s, err := c.Open(t)
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", c.Name, t.Name(), err)
		}
		o := &open{c: c, s: s, r: &Result{Target: t.Name(), Contender: c.Name, Workers: w}}
		opened = append(opened, o)
		for range w {
			login, err := s.Worker()
			if err != nil {
				return nil, fmt.Errorf("%s on %s: %w", c.Name, t.Name(), err)
			}
			// Warm up: the first login of a worker may open its connection.
			if _, err := login(ctx, t.User, t.Password); err != nil {
				return nil, fmt.Errorf("%s on %s: %w", c.Name, t.Name(), err)
			}
			o.logins = append(o.logins, login)
		}
	}
	for round := range opts.Rounds {
		for i := range opened {
			o := opened[(i+round)%len(opened)]
			smp, err := run(ctx, t, o.logins, opts.Duration)
			if err != nil {
				return nil, fmt.Errorf("%s on %s, %d workers: %w", o.c.Name, t.Name(), w, err)
			}
			o.r.samples = append(o.r.samples, smp)
		}
		fmt.Fprintf(opts.Progress, "%s, %d workers: round %d/%d done\n", t.Name(), w, round+1, opts.Rounds)
	}
	var floor *Result
	results := make([]*Result, len(opened))
	for i, o := range opened {
		results[i] = o.r
		summarize(o.r)
		if o.c.Name == Floor {
			floor = o.r
		}
	}
	for _, r := range results {
		ratios(r, floor)
	}
	return results, nil
}

// run runs the logins concurrently, each in its own goroutine, for d.
func run(ctx context.Context, t *Target, logins []LoginFunc, d time.Duration) (sample, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lats     = make([][]time.Duration, len(logins))
	)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	deadline := start.Add(d)
	for i, login := range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1024)
			for now := time.Now(); now.Before(deadline); {
				if _, err := login(ctx, t.User, t.Password); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				end := time.Now()
				l = append(l, end.Sub(now))
				now = end
			}
			lats[i] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if firstErr != nil {
		return sample{}, firstErr
	}
	s := sample{elapsed: elapsed, mallocs: after.Mallocs - before.Mallocs, bytes: after.TotalAlloc - before.TotalAlloc}
	for _, l := range lats {
		s.logins += len(l)
		s.latencies = append(s.latencies, l...)
	}
	return s, nil
}

func summarize(r *Result) {
	var rates []float64
	var all []time.Duration
	var logins int
	var mallocs, bytes uint64
	for _, s := range r.samples {
		rates = append(rates, float64(s.logins)/s.elapsed.Seconds())
		all = append(all, s.latencies...)
		logins += s.logins
		mallocs += s.mallocs
		bytes += s.bytes
	}
	r.LoginsPerSec = median(rates)
	slices.Sort(all)
	r.P50, r.P99 = percentile(all, 0.50), percentile(all, 0.99)
	if logins > 0 {
		r.AllocsPerLogin = float64(mallocs) / float64(logins)
		r.BytesPerLogin = float64(bytes) / float64(logins)
	}
}

func ratios(r, floor *Result) {
	var rs []float64
	for i, s := range r.samples {
		f := floor.samples[i]
		rs = append(rs, (float64(s.logins)/s.elapsed.Seconds())/(float64(f.logins)/f.elapsed.Seconds()))
	}
	r.LoginsRatio = median(rs)
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	r.P50Ratio = div(float64(r.P50), float64(floor.P50))
	r.P99Ratio = div(float64(r.P99), float64(floor.P99))
	r.AllocsRatio = div(r.AllocsPerLogin, floor.AllocsPerLogin)
	r.BytesRatio = div(r.BytesPerLogin, floor.BytesPerLogin)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the p-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Table writes results as a Markdown table, one block per target and
// number of workers, in the order given.
func Table(w io.Writer, results []*Result) {
	fmt.Fprintln(w, "| target | workers | contender | logins/s | × floor | p50 | × floor | p99 | × floor | allocs/login | × floor | B/login | × floor |")
	fmt.Fprintln(w, "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %d | %s | %.0f | %.2f | %s | %.2f | %s | %.2f | %.0f | %.2f | %s | %.2f |\n",
			r.Target, r.Workers, r.Contender,
			r.LoginsPerSec, r.LoginsRatio,
			roundDur(r.P50), r.P50Ratio, roundDur(r.P99), r.P99Ratio,
			r.AllocsPerLogin, r.AllocsRatio, bytesString(r.BytesPerLogin), r.BytesRatio)
	}
}

func roundDur(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func bytesString(b float64) string {
	if b >= 10*1024 {
		return fmt.Sprintf("%.1f KiB", b/1024)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0f", b), ".0")
}
