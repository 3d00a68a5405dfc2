package storetest_test

import (
	"context"
	"testing"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// memStore gives MemStore's accessors the shape of storetest.Reader.
type memStore struct{ *ldapauth.MemStore }

func (s memStore) UserFields(_ context.Context, username string) (map[string]string, bool, error) {
	u := storetest.User(s, username)
	if u == nil {
		return nil, false, nil
	}
	return u.Fields, true, nil
}

func (s memStore) Organisations(_ context.Context, username string) ([]string, error) {
	return storetest.Organisations(s.MemStore, username), nil
}

func TestMemStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) ldapauth.UserStore { return memStore{ldapauth.NewMemStore()} })
}
