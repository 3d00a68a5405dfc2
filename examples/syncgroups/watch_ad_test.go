package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/sambatest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// -changes and -watch against Active Directory (a Samba DC of its own):
// incremental runs from cron, then a watcher that removes a user deleted on
// the DC within a few polls and stops cleanly.
func TestWatchAD(t *testing.T) {
	d := sambatest.Start(t)
	vars := map[string]string{
		"LDAP_AUTH_URL":                          d.URL,
		"LDAP_AUTH_SEARCH_BASE":                  d.BaseDN,
		"LDAP_AUTH_OBJECT_CLASS":                 "user",
		"LDAP_AUTH_USER_FIELDS":                  "username=sAMAccountName,email=mail,first_name=givenName,last_name=sn",
		"LDAP_AUTH_FORMAT_USERNAME":              "django_python3_ldap.utils.format_username_active_directory",
		"LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN":      d.Domain,
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS":        "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                       d.GroupDN(sambatest.GroupLogin),
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     d.GroupDN(sambatest.GroupMarvel),
		"LDAP_SYNC_USER_USERNAME":                d.AdminName,
		"LDAP_SYNC_USER_PASSWORD":                d.AdminPassword,
	}
	db := sqliteDB(t)

	// -changes from cron: the first run reads everything, the next one
	// only the deletion.
	r := command(t, vars, "-db", db, "-changes", "-create-users", "-json", "-quiet")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "full refresh", decode(t, r.stdout).ChangeSync.Mode)
	require.NoError(t, d.Admin(t).Del(ldap.NewDelRequest(d.UserDN(sambatest.UserCarol), nil)))
	r = command(t, vars, "-db", db, "-changes", "-create-users", "-json", "-quiet")
	require.Equal(t, exitOK, r.code, r.stderr)
	rep := decode(t, r.stdout)
	assert.Equal(t, "incremental", rep.ChangeSync.Mode)
	assert.Equal(t, []string{sambatest.UserCarol}, rep.UsersRemoved)

	ctx, stop := context.WithCancel(context.Background()) // SIGTERM, as main's NotifyContext makes it
	defer stop()
	var stdout, stderr lockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"-db", db, "-watch", "-create-users", "-poll", "200ms"}, &stdout, &stderr,
			func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	}()
	until := func(what string, cond func(*storetest.Contents) bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if cond(snapshot(t, db)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("never: %s\nstderr:\n%s", what, stderr.String())
			}
		}
	}
	until("the catch-up run", func(s *storetest.Contents) bool { return slices.Contains(s.Users, sambatest.UserBob) })
	require.NoError(t, d.Admin(t).Del(ldap.NewDelRequest(d.UserDN(sambatest.UserBob), nil)))
	until("bob removed", func(s *storetest.Contents) bool { return !slices.Contains(s.Users, sambatest.UserBob) })
	stop()
	select {
	case code := <-exited:
		assert.Equal(t, exitOK, code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not stop")
	}
	assert.Contains(t, stdout.String(), "users removed (1):\n  bob\n")
	assert.Contains(t, stdout.String(), "change-driven sync (incremental)")
	assert.Contains(t, stderr.String(), "syncgroups: stopped after")
}
