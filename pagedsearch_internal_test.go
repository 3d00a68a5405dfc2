package ldapauth

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
)

// pages answers a paged search with two entries a page over two pages.
// With dropControl, the second page comes back without the paging
// control, as a broken server or a proxy that loses it part-way would send
// it; otherwise the second page carries the control with an empty cookie,
// the end of the read.
func pages(dropControl bool) Directory {
	entry := func(name string) *ldap.Entry {
		return ldap.NewEntry("uid="+name+",dc=example,dc=com", map[string][]string{"uid": {name}})
	}
	return DirectoryFunc(func(_ context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		var cookie []byte
		if c, ok := ldap.FindControl(req.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
			cookie = c.Cookie
		}
		if len(cookie) == 0 { // the first page
			next := ldap.NewControlPaging(2)
			next.SetCookie([]byte("page2"))
			return &ldap.SearchResult{Entries: []*ldap.Entry{entry("a"), entry("b")}, Controls: []ldap.Control{next}}, nil
		}
		res := &ldap.SearchResult{Entries: []*ldap.Entry{entry("c"), entry("d")}}
		if !dropControl {
			res.Controls = []ldap.Control{ldap.NewControlPaging(2)} // empty cookie: done
		}
		return res, nil
	})
}

// TestPagedSearchLosesControl: a page after the first that comes back
// without the paging control ends the read with an error (the sync then
// aborts and removes nothing), never as a complete read; a server that
// ends with an empty cookie is read in full.
func TestPagedSearchLosesControl(t *testing.T) {
	for _, tt := range []struct {
		name    string
		drop    bool
		wantErr error
		entries int
	}{
		{"control on every page", false, nil, 4},
		{"control lost on page 2", true, errPagingLost, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := ldap.NewSearchRequest("dc=example,dc=com", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
				"(uid=*)", []string{"uid"}, nil)
			var got int
			err := pagedSearch(context.Background(), pages(tt.drop), req, 2, func(res *ldap.SearchResult) error {
				got += len(res.Entries)
				return nil
			})
			assert.ErrorIs(t, err, tt.wantErr)
			assert.Equal(t, tt.entries, got, "entries handed on before the read ended")
		})
	}
}

// numbered answers a paged search over n pages of one entry each, the
// cookie naming the next page, and reports each request's page on asked.
func numbered(n int, asked chan<- int, active *atomic.Int32) Directory {
	return DirectoryFunc(func(_ context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		active.Add(1)
		defer active.Add(-1)
		p := 1
		if c, ok := ldap.FindControl(req.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging); ok && len(c.Cookie) > 0 {
			p, _ = strconv.Atoi(string(c.Cookie))
		}
		asked <- p
		next := ldap.NewControlPaging(1)
		if p < n {
			next.SetCookie([]byte(strconv.Itoa(p + 1)))
		}
		e := ldap.NewEntry("uid=u"+strconv.Itoa(p)+",dc=example,dc=com", nil)
		return &ldap.SearchResult{Entries: []*ldap.Entry{e}, Controls: []ldap.Control{next}}, nil
	})
}

// The next page is asked for while a page is handled (the server works
// while the sync writes), never two ahead, and every page comes in order.
func TestPagedSearchAsksForTheNextPageAhead(t *testing.T) {
	asked := make(chan int, 16)
	var active atomic.Int32
	req := ldap.NewSearchRequest("dc=example,dc=com", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(uid=*)", nil, nil)
	var got []string
	err := pagedSearch(context.Background(), numbered(5, asked, &active), req, 1, func(res *ldap.SearchResult) error {
		handled := len(got) + 1
		got = append(got, res.Entries[0].DN)
		assert.Equal(t, handled, <-asked, "page %d was asked for", handled)
		if handled < 5 {
			select {
			case p := <-asked:
				assert.Equal(t, handled+1, p, "the page asked for while page %d is handled", handled)
			case <-time.After(10 * time.Second):
				t.Fatalf("page %d was not asked for while page %d was handled", handled+1, handled)
			}
			asked <- handled + 1 // for the next call's first check
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, []string{"uid=u1,dc=example,dc=com", "uid=u2,dc=example,dc=com", "uid=u3,dc=example,dc=com",
		"uid=u4,dc=example,dc=com", "uid=u5,dc=example,dc=com"}, got)
	assert.Empty(t, asked, "no page asked for twice, none after the last")
}

// A page that fails to be handled ends the read: the page asked for ahead
// is waited for, so the connection is free when pagedSearch returns, and
// nothing further is asked.
func TestPagedSearchStopsAfterAFailedPage(t *testing.T) {
	asked := make(chan int, 16)
	var active atomic.Int32
	req := ldap.NewSearchRequest("dc=example,dc=com", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(uid=*)", nil, nil)
	boom := errors.New("store refused the page")
	err := pagedSearch(context.Background(), numbered(5, asked, &active), req, 1, func(*ldap.SearchResult) error { return boom })
	assert.ErrorIs(t, err, boom)
	assert.Zero(t, active.Load(), "no search still running once pagedSearch returned")
	close(asked)
	var pages []int
	for p := range asked {
		pages = append(pages, p)
	}
	assert.LessOrEqual(t, len(pages), 2, "at most the failed page and the one asked ahead: %v", pages)
}
