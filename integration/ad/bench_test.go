package ad_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/sambatest"
)

// BenchmarkSyncChangesAD compares, on the Samba DC (every user of the
// domain, about 1,630 with the seeded big group), a run after 10 users
// changed: the full sync against SyncChanges with DirSync. Each iteration
// changes the mail of 10 users of its own (untimed), then syncs (timed).
//
//	LDAPAUTH_REQUIRE_SAMBA=1 go test -run '^$' -bench SyncChangesAD -benchtime 5x -count 6 ./integration/ad
func BenchmarkSyncChangesAD(b *testing.B) {
	d := dc.Get(b)
	admin := d.Admin(b)
	var dns, sams []string
	for i := range 10 {
		sam := fmt.Sprintf("benchu%02d", i)
		dn := d.UserDN(sam)
		req := ldap.NewAddRequest(dn, nil)
		req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
		req.Attribute("sAMAccountName", []string{sam})
		req.Attribute("mail", []string{sam + "@" + sambatest.DNSName})
		req.Attribute("userAccountControl", []string{"514"})
		if err := admin.Add(req); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = admin.Del(ldap.NewDelRequest(dn, nil)) })
		dns, sams = append(dns, dn), append(sams, sam)
	}
	round := 0
	change := func() {
		round++
		for i, dn := range dns {
			req := ldap.NewModifyRequest(dn, nil)
			req.Replace("mail", []string{fmt.Sprintf("r%d-%s@example.com", round, sams[i])})
			if err := admin.Modify(req); err != nil {
				b.Fatal(err)
			}
		}
	}
	opts := ldapauth.SyncOptions{CreateUsers: true}
	for _, mode := range []string{"full-sync", "dirsync"} {
		b.Run(mode, func(b *testing.B) {
			cfg, err := ldapauth.LoadConfig(lookup(func() map[string]string {
				vars := adEnv(d)
				for k, v := range syncEnv(d, []string{d.GroupDN(sambatest.GroupReaders)}, nil) {
					vars[k] = v
				}
				return vars
			}()))
			if err != nil {
				b.Fatal(err)
			}
			cfg.Store = ldapauth.NewMemStore()
			a, err := ldapauth.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			sync := a.Sync
			if mode == "dirsync" {
				sync = a.SyncChanges
			}
			if _, err := sync(context.Background(), opts); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				change()
				b.StartTimer()
				rep, err := sync(context.Background(), opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(rep.UsersUpdated) != 10 {
					b.Fatalf("%d users updated, want 10", len(rep.UsersUpdated))
				}
			}
		})
	}
}
