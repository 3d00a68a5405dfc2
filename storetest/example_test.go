package storetest_test

import (
	"testing"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// newEmptyStore stands for your store's constructor: a new, empty store,
// closed when t ends.
func newEmptyStore(t *testing.T) ldapauth.UserStore { return ldapauth.NewMemStore() }

// Hold your own store to the UserStore contract, from a test of its package.
func ExampleRun() {
	testMyStore := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) ldapauth.UserStore { return newEmptyStore(t) })
	}
	_ = testMyStore // func TestMyStore(t *testing.T) in your package
}
