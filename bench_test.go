package ldapauth_test

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// transports are the three ways to reach the directory.
func transports(srv *ldaptest.Server) []struct {
	name string
	url  string
	tls  bool // StartTLS
} {
	return []struct {
		name string
		url  string
		tls  bool
	}{{"plain", srv.URL(), false}, {"starttls", srv.URL(), true}, {"ldaps", srv.LDAPSURL(), false}}
}

// par8 runs f b.N times from 8 goroutines: ns/op is wall time per login.
func par8(b *testing.B, f func() error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := f(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func seq(b *testing.B, f func() error) {
	for b.Loop() {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogin measures whole logins (no store, no syncer) against the
// in-process directory on loopback.
func BenchmarkLogin(b *testing.B) {
	srv := ldaptest.Start(b, ldaptest.DemoDirectory())
	ctx := context.Background()
	for _, tr := range transports(srv) {
		for _, pool := range []struct {
			name string
			size int
		}{{"pooled", 0}, {"dial", -1}} {
			for _, account := range []struct {
				name string
				opts []func(*ldapauth.Config)
			}{{"user", nil}, {"service", []func(*ldapauth.Config){withService(srv)}}} {
				opts := append([]func(*ldapauth.Config){func(c *ldapauth.Config) {
					c.UseTLS, c.PoolSize = tr.tls, pool.size
					c.ConnectTimeout, c.ReceiveTimeout = 10*time.Second, 10*time.Second
				}}, account.opts...)
				a, _ := poolAuth(b, srv, []string{tr.url}, opts...)
				ldapauth.SetClock(a, time.Now)
				login := func() error { _, err := a.Authenticate(ctx, "alice", "alice-password"); return err }
				name := tr.name + "/" + pool.name + "/" + account.name
				b.Run(name+"/seq", func(b *testing.B) { b.ReportAllocs(); seq(b, login) })
				b.Run(name+"/par8", func(b *testing.B) { b.ReportAllocs(); par8(b, login) })
			}
		}
	}
}

// BenchmarkRawBindSearch is the floor a pooled login is measured against:
// go-ldap's bind and the login search on a connection already open.
func BenchmarkRawBindSearch(b *testing.B) {
	srv := ldaptest.Start(b, ldaptest.DemoDirectory())
	for _, tr := range transports(srv) {
		b.Run(tr.name+"/seq", func(b *testing.B) {
			tlsConf := &tls.Config{RootCAs: srv.CAPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
			l, err := ldap.DialURL(tr.url, ldap.DialWithTLSConfig(tlsConf))
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			if tr.tls {
				if err := l.StartTLS(tlsConf); err != nil {
					b.Fatal(err)
				}
			}
			attrs := []string{"uid", "givenName", "sn", "mail", "memberOf"}
			b.ReportAllocs()
			seq(b, func() error {
				if err := l.Bind(srv.UserDN("alice"), "alice-password"); err != nil {
					return err
				}
				_, err := l.Search(ldap.NewSearchRequest(srv.BaseDN(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false,
					"(&(uid=alice)(objectClass=posixAccount))", attrs, nil))
				return err
			})
		})
	}
}

// BenchmarkServiceAccountLatency measures what running the service
// account's search beside the user's bind saves, with 1 ms added each way
// (a 2 ms round trip) by a proxy: parallel is ldapauth's order (the bind
// and the search at the same time), user-only is the search as the user
// (two round trips), and serial is django-python3-ldap's order (bind as the
// user, bind as the service account, search: three round trips), done with
// go-ldap alone on one open connection, so that it is a floor for that
// order, not ldapauth's own.
func BenchmarkServiceAccountLatency(b *testing.B) {
	srv := ldaptest.Start(b, ldaptest.DemoDirectory())
	p := faultproxy.Start(b, hostPort(srv.URL()))
	p.SetDelay(time.Millisecond)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		service bool
	}{{"parallel", true}, {"user-only", false}} {
		var opts []func(*ldapauth.Config)
		if tt.service {
			opts = append(opts, withService(srv))
		}
		a, _ := poolAuth(b, srv, []string{p.URL()}, opts...)
		ldapauth.SetClock(a, time.Now)
		b.Run(tt.name, func(b *testing.B) {
			seq(b, func() error { _, err := a.Authenticate(ctx, "alice", "alice-password"); return err })
		})
	}
	b.Run("serial", func(b *testing.B) {
		l, err := ldap.DialURL(p.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		svc := &ldapauth.Config{}
		withService(srv)(svc)
		seq(b, func() error {
			if err := l.Bind(srv.UserDN("alice"), "alice-password"); err != nil {
				return err
			}
			if err := l.Bind(svc.ConnectionUsername, svc.ConnectionPassword); err != nil {
				return err
			}
			_, err := l.Search(ldap.NewSearchRequest(srv.BaseDN(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false,
				"(&(uid=alice)(objectClass=posixAccount))", []string{"uid", "givenName", "sn", "mail", "memberOf", "primaryGroupID"}, nil))
			return err
		})
	})
}
