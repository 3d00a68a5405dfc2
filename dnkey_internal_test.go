package ldapauth

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// plainDNKey, DNKey's fast path, must give parsedDNKey's key for every DN it
// accepts.
var dnKeyCases = []string{
	"", " ", ",", "=", "a=", "=b", " =b", "a=b", "A=B", "uid=user000001,ou=people,dc=example,dc=com",
	"UID=Alice, OU=People,dc=example,dc=com", " uid = alice , ou=people ", "uid=a b,dc=x", "u id=a,dc=x",
	"uid=a=b,dc=x", "uid=,dc=x", "uid=a,", ",uid=a", "uid=a,,dc=x", "uid", "uid=a,dc", "uid=a  ,dc=x",
	"uid=  a,dc=x", "cn=a+sn=b,dc=x", `uid=smith\, john,dc=x`, "uid=#04024869,dc=x", "uid=a;dc=x",
	"uid=jürgen,dc=x", "uid=a\tb,dc=x", `uid="a",dc=x`, "uid=a<b,dc=x", "1.2.3=a,DC=X", "cn=a =b,dc=x",
	"cn=a= b,dc=x", "cn =a,dc=x", "cn= ,dc=x", "cn=  ", "cn=a ,dc=x ", " ,cn=a",
}

func TestPlainDNKey(t *testing.T) {
	for _, dn := range dnKeyCases {
		if key, ok := plainDNKey(dn); ok {
			assert.Equal(t, parsedDNKey(dn), key, "%q", dn)
		}
		assert.Equal(t, parsedDNKey(dn), DNKey(dn), "%q", dn)
	}
	for _, dn := range []string{"uid=user000001,ou=people,dc=example,dc=com", "cn=readers,ou=groups,dc=example,dc=com", "uid=a b,dc=x", "uid=,dc=x"} {
		key, ok := plainDNKey(dn)
		assert.True(t, ok, dn)
		assert.Equal(t, dn, key, "already a key")
	}
	for _, dn := range []string{"UID=Alice, OU=People,dc=example,dc=com", "uid=a=b,dc=x", " uid = alice , ou=people "} {
		_, ok := plainDNKey(dn)
		assert.True(t, ok, dn)
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() { DNKey("uid=user000001,ou=people,dc=example,dc=com") }))
}

func FuzzPlainDNKey(f *testing.F) {
	for _, dn := range dnKeyCases {
		f.Add(dn)
	}
	f.Fuzz(func(t *testing.T, dn string) {
		if key, ok := plainDNKey(dn); ok && key != parsedDNKey(dn) {
			t.Errorf("plainDNKey(%q) = %q, parsedDNKey %q", dn, key, parsedDNKey(dn))
		}
	})
}
