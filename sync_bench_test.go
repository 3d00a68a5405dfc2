package ldapauth_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// The sync benchmarks read 10,000 users from a directory, beside a raw
// paged search of the same entries with go-ldap (dial, bind, paged search
// of the same filter and attributes, page size 500), to report the sync's
// overhead over reading alone:
//
//	go test -run '^$' -bench 'BenchmarkSync$|BenchmarkRawPagedSearch$' -count 6
//
// glauth: the in-process directory, Generate(10000, 1000), 10 synced
// groups. GLAuth ignores the page size and runs in this process, so its
// own time and allocations are inside both figures.
// openldap: real OpenLDAP in its own process, 10,000 generated users in
// readers, with real paging: the figures are the client's alone.
//
// The sync runs in its steady state (the store already in step, a no-op
// run), as a scheduled job mostly does. peak-heap-B is the highest live
// heap seen during the loop above the heap at its start; cpu-ns/op is this
// process's user and system CPU time, which other load on the machine
// does not inflate as it does wall time.

const benchUsers = 10_000

type benchDir struct {
	name   string
	vars   map[string]string
	url    string
	base   string
	filter string
	attrs  []string
	bindDN string
	bindPW string
}

func benchDirs(b *testing.B) []benchDir {
	b.Helper()
	attrs := []string{"uid", "givenName", "mail", "sn", "memberOf"}

	gl := ldaptest.Start(b, ldaptest.Generate(benchUsers, 1000))
	glVars := syncVars(gl, nil)
	var groups string
	for i := range 10 {
		if i > 0 {
			groups += ":"
		}
		groups += gl.GroupDN(fmt.Sprintf("group%04d", i))
	}
	glVars["LDAP_SYNCED_GROUPS"] = groups

	dirs := []benchDir{{
		name: "glauth", vars: glVars, url: gl.URL(), base: gl.BaseDN(),
		filter: "(&(objectClass=posixAccount))", attrs: attrs,
		bindDN: "uid=svc,dc=example,dc=com", bindPW: ldaptest.GeneratedPassword("svc"),
	}}
	if sl, err := slapdtest.New(slapdtest.Options{GeneratedUsers: benchUsers, GeneratedUserGroups: []string{"readers"}, LogLevel: "0"}); err == nil {
		b.Cleanup(sl.Stop)
		dirs = append(dirs, benchDir{
			name: "openldap", vars: slapdSyncVars(sl, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), url: sl.URL, base: slapdtest.PeopleDN,
			filter: "(&(objectClass=inetOrgPerson))", attrs: attrs,
			bindDN: slapdtest.ServiceDN, bindPW: slapdtest.ServicePassword,
		})
	} else {
		b.Logf("openldap benchmarks not run: %v", err)
	}
	return dirs
}

// peakHeap samples the live heap until stop is called and returns the
// highest value above the heap at the start.
func peakHeap() (stop func() uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(benchSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				peak = max(peak, read())
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		peak = max(peak, read())
		if peak < base {
			return 0
		}
		return peak - base
	}
}

func BenchmarkSync(b *testing.B) {
	for _, d := range benchDirs(b) {
		b.Run(d.name, func(b *testing.B) {
			store := ldapauth.NewMemStore()
			a := syncAuth(b, d.vars, store)
			ctx := context.Background()
			if _, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			stop := peakHeap()
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				rep, err := a.Sync(ctx, ldapauth.SyncOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if rep.DirectoryUsers < benchUsers || rep.Changes() != 0 {
					b.Fatalf("not a steady-state run: %d users, %d changes", rep.DirectoryUsers, rep.Changes())
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(stop()), "peak-heap-B")
		})
	}
}

func BenchmarkRawPagedSearch(b *testing.B) {
	for _, d := range benchDirs(b) {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			stop := peakHeap()
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				c, err := ldap.DialURL(d.url)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Bind(d.bindDN, d.bindPW); err != nil {
					b.Fatal(err)
				}
				res, err := c.SearchWithPaging(ldap.NewSearchRequest(d.base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
					0, 0, false, d.filter, d.attrs, nil), 500)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Entries) < benchUsers {
					b.Fatalf("%d entries", len(res.Entries))
				}
				c.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(stop()), "peak-heap-B")
		})
	}
}

// benchSampleEvery is how often peakHeap reads the heap size.
var benchSampleEvery = 10 * time.Millisecond
