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
	u := s.User(username)
	if u == nil {
		return nil, false, nil
	}
	return u.Fields, true, nil
}

func (s memStore) Organisations(_ context.Context, username string) ([]string, error) {
	return s.MemStore.Organisations(username), nil
}

func TestMemStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) ldapauth.UserStore { return memStore{ldapauth.NewMemStore()} })
}
