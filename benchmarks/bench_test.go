package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(MillionEnv) == "1" {
		scaleSizes = append(scaleSizes, struct {
			server string
			users  int
		}{"slapd", MillionUsers})
	}
	ServeIfChild()
	if code, child := ChildMain(); child { // a run of MeasureScaleInChildren
		os.Exit(code)
	}
	code := m.Run()
	stopScaleTargets()
	os.Exit(code)
}

// startServers starts the servers for one test or benchmark.
func startServers(tb testing.TB) *Servers {
	tb.Helper()
	s, err := StartServers()
	require.NoError(tb, err)
	tb.Cleanup(s.Close)
	if s.SlapdErr != nil {
		tb.Logf("no slapd targets: %v", s.SlapdErr)
	}
	return s
}

// unsupported lists the contenders that cannot log in on a server, and why.
// TestCorrectness requires them to fail, so that the reason stays true.
var unsupported = map[string]map[string]string{
	"glauth": {
		// GLAuth lets a user search only the base DN and ou=users exactly,
		// and cap reads the attributes with a base search of the entry.
		"cap": "cap reads the entry with a base search as the user; GLAuth refuses users a search based anywhere but <base> or ou=users,<base>",
	},
	"slapd": {
		"go-ad-auth": "go-ad-auth binds as alice@example.com (a UPN); OpenLDAP's simple bind wants a DN, and its schema has no userPrincipalName",
	},
}

func TestCorrectness(t *testing.T) {
	servers := startServers(t)
	ctx := context.Background()
	for _, target := range servers.Targets {
		for _, c := range Contenders(DefaultLDAPAuthVariants()) {
			t.Run(target.Name()+"/"+c.Name, func(t *testing.T) {
				err := Check(ctx, c, target)
				if why, ok := unsupported[target.Server][c.Name]; ok {
					assert.Error(t, err, "expected to fail: %s", why)
					t.Logf("fails as expected (%s): %v", why, err)
					return
				}
				assert.NoError(t, err)
			})
		}
	}
}

func TestParseLDAPAuthVariant(t *testing.T) {
	v, err := ParseLDAPAuthVariant("ldapauth-pool2:LDAP_AUTH_POOL_SIZE=2,svc")
	require.NoError(t, err)
	assert.Equal(t, LDAPAuthVariant{Name: "ldapauth-pool2", Service: true, Env: map[string]string{"LDAP_AUTH_POOL_SIZE": "2"}}, v)
	for _, bad := range []string{
		"", ":svc", "x:POOL=8", "x:LDAP_AUTH_POOL_SIZE",
		"x:LDAP_AUTH_POOLSIZE=0",                 // a typo ldapauth would ignore
		"x:LDAP_AUTH_POOL_SIZE=lots",             // a value LoadConfig refuses
		"x:LDAP_AUTH_URL=ldap://h",               // set by the target
		"x:LDAP_AUTH_CONNECTION_USERNAME=cn=svc", // svc says that
	} {
		_, err := ParseLDAPAuthVariant(bad)
		assert.Error(t, err, bad)
	}
}

// TestDefaultVariantsConfigure checks that each default variant is what
// its name says: pooled or not, with a service account or not.
func TestDefaultVariantsConfigure(t *testing.T) {
	target := &Target{URL: "ldap://127.0.0.1:389", SearchBase: "dc=example,dc=com", ObjectClass: "posixAccount"}
	for _, v := range DefaultLDAPAuthVariants() {
		cfg, err := v.config(target.Env())
		require.NoError(t, err, v.Name)
		assert.Equal(t, !strings.Contains(v.Name, "nopool"), cfg.PoolSize > 0, "%s: PoolSize %d", v.Name, cfg.PoolSize)
		assert.Equal(t, strings.Contains(v.Name, "svc"), v.Service, v.Name)
	}
}

// BenchmarkLogin measures every correct contender on every target with 1
// and 8 concurrent workers, for benchstat:
//
//	go test -run '^$' -bench Login -count 10 | tee new.txt
//
// Each login is one op; p50-ns and p99-ns are the latency percentiles and
// logins/s the rate. Allocations include the client's goroutines (the
// test directory runs in a child process; slapd is a process of its own).
// cmd/ldapbench measures the same contenders interleaved, with ratios.
func BenchmarkLogin(b *testing.B) {
	servers := startServers(b)
	ctx := context.Background()
	for _, target := range servers.Targets {
		for _, c := range Contenders(DefaultLDAPAuthVariants()) {
			if _, ok := unsupported[target.Server][c.Name]; ok {
				continue
			}
			for _, w := range []int{1, 8} {
				name := fmt.Sprintf("server=%s/mode=%s/contender=%s/workers=%d", target.Server, target.Mode, c.Name, w)
				b.Run(name, func(b *testing.B) { benchLogin(b, ctx, c, target, w) })
			}
		}
	}
}

func benchLogin(b *testing.B, ctx context.Context, c Contender, t *Target, workers int) {
	s, err := c.Open(t)
	require.NoError(b, err)
	defer s.Close()
	logins := make([]LoginFunc, workers)
	for i := range logins {
		logins[i], err = s.Worker()
		require.NoError(b, err)
		_, err = logins[i](ctx, t.User, t.Password) // warm up
		require.NoError(b, err)
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		lats = make([][]time.Duration, workers)
		errs = make([]error, workers)
	)
	b.ReportAllocs()
	b.ResetTimer()
	for i, login := range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if _, err := login(ctx, t.User, t.Password); err != nil {
					errs[i] = err
					return
				}
				lats[i] = append(lats[i], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	for _, err := range errs {
		require.NoError(b, err)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	b.ReportMetric(float64(percentile(all, 0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(all, 0.99).Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}

// The sync at scale, for benchstat: the same entries, server and page
// size (ScalePageSize) in each of
//
//	BenchmarkPagedSearch  the floor: a raw paged search of every user
//	BenchmarkSync         ldapauth's no-op sync, the store already in step
//	BenchmarkFirstSync    ldapauth's sync with CreateUsers into an empty store
//
// go test -run '^$' -bench 'PagedSearch|Sync' -count 6 | tee sync.txt
// benchstat -col .name -row /server,/users sync.txt
//
// peak-heap-B is the highest heap (live and unswept objects) seen during
// one extra, untimed run above the live heap before it, with GOGC at
// HeapGCPercent; the steady case's MemStore is live throughout. Each server is started once per
// test binary (slapd bulk-loads 100,000 users in a minute or so).
func BenchmarkPagedSearch(b *testing.B) { benchSyncCase(b, PagedSearchCase) }

func BenchmarkSync(b *testing.B) { benchSyncCase(b, SteadySync) }

func BenchmarkFirstSync(b *testing.B) { benchSyncCase(b, FirstSync) }

// scaleSizes are the servers and sizes of the sync at scale. GLAuth
// builds every entry on each search, so it is measured at 10,000 only.
// LDAPBENCH_MILLION=1 adds slapd with 999,999 generated users (slapdtest's
// most), which takes minutes to load and to run: CI never sets it.
var scaleSizes = []struct {
	server string
	users  int
}{{"glauth", 10_000}, {"slapd", 10_000}, {"slapd", 100_000}}

var (
	scaleMu      sync.Mutex
	scaleTargets = map[string]*SyncScale{}
	scaleStops   []func()
)

// scaleTarget starts server with users generated users the first time
// it is asked for, and keeps it for the rest of the test binary.
func scaleTarget(b *testing.B, server string, users int) *SyncScale {
	scaleMu.Lock()
	defer scaleMu.Unlock()
	key := fmt.Sprint(server, users)
	if s, ok := scaleTargets[key]; ok {
		return s
	}
	t, stop, err := StartScaleTarget(server, users)
	if err != nil && server == "slapd" && errors.Is(err, slapdtest.ErrNotInstalled) {
		b.Skip(err)
	}
	require.NoError(b, err)
	scaleStops = append(scaleStops, stop)
	s, err := PrepareSyncScale(context.Background(), t, users)
	require.NoError(b, err)
	scaleStops = append(scaleStops, s.Close)
	scaleTargets[key] = s
	return s
}

func stopScaleTargets() {
	for i := len(scaleStops) - 1; i >= 0; i-- {
		scaleStops[i]()
	}
}

func benchSyncCase(b *testing.B, c SyncCase) {
	ctx := context.Background()
	for _, sc := range scaleSizes {
		b.Run(fmt.Sprintf("server=%s/users=%d", sc.server, sc.users), func(b *testing.B) {
			s := scaleTarget(b, sc.server, sc.users)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				b.StartTimer()
				require.NoError(b, s.Run(ctx, c))
			}
			// One more run, untimed, for the peak heap (see HeapGCPercent).
			b.StopTimer()
			old := debug.SetGCPercent(HeapGCPercent)
			defer debug.SetGCPercent(old)
			runtime.GC()
			_, peak, err := PeakHeap(func() error { return s.Run(ctx, c) })
			require.NoError(b, err)
			b.ReportMetric(float64(peak), "peak-heap-B")
		})
	}
}
