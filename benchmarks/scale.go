package benchmarks

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// StartScaleTarget starts server ("slapd" or "glauth") with users generated
// users and returns its plain target, whose service account may read them
// all, and a function that stops it. slapd is bulk-loaded with its own
// slapadd before it starts; the test directory builds every entry on each
// search (see ldaptest), so it is only fit for the smaller sizes.
func StartScaleTarget(server string, users int) (*Target, func(), error) {
	switch server {
	case "slapd":
		sl, err := slapdtest.New(slapdtest.Options{GeneratedUsers: users, LogLevel: "0"})
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

// heapMetric is the bytes of live and not yet swept heap objects, kept up
// to date by the runtime between collections.
const heapMetric = "/memory/classes/heap/objects:bytes"

// PeakHeap runs f and returns its wall time and the peak of the heap while
// it ran, above the heap when it started, sampled every millisecond.
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
