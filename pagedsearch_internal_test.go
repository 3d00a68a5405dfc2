package ldapauth

import (
	"context"
	"testing"

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
