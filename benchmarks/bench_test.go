package benchmarks

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	ServeIfChild()
	os.Exit(m.Run())
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
	v, err := ParseLDAPAuthVariant("ldapauth-pool:LDAP_AUTH_POOL_SIZE=8,svc")
	require.NoError(t, err)
	assert.Equal(t, LDAPAuthVariant{Name: "ldapauth-pool", Service: true, Env: map[string]string{"LDAP_AUTH_POOL_SIZE": "8"}}, v)
	for _, bad := range []string{"", ":svc", "x:POOL=8", "x:LDAP_AUTH_POOL_SIZE"} {
		_, err := ParseLDAPAuthVariant(bad)
		assert.Error(t, err, bad)
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

// BenchmarkSyncFloor is the floor of the sync at scale: a raw paged search
// of every generated user as the service account, with its wall time and
// the peak heap (peak-heap-B). Once ldapauth's batch sync is in, it is
// measured beside this on the same servers.
func BenchmarkSyncFloor(b *testing.B) {
	for _, sc := range []struct {
		server string
		users  int
	}{{"glauth", 10_000}, {"slapd", 10_000}, {"slapd", 100_000}} {
		b.Run(fmt.Sprintf("server=%s/users=%d", sc.server, sc.users), func(b *testing.B) {
			t, stop, err := StartScaleTarget(sc.server, sc.users)
			require.NoError(b, err)
			defer stop()
			var peak uint64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				var n int
				_, p, err := PeakHeap(func() (err error) { n, err = PagedSearch(t, 500); return err })
				require.NoError(b, err)
				require.GreaterOrEqual(b, n, sc.users)
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak), "peak-heap-B")
		})
	}
}
