package slapdtest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLDIF(t *testing.T) {
	const in = "version: 1\n" +
		"# a comment\n" +
		"#  folded comment\n" +
		"dn: uid=smith\\, john,ou=people,dc=example,dc=com\n" +
		"cn: John\n" +
		"  Smith\n" +
		"# a comment inside the record\n" +
		" folded\n" +
		"\n\n" +
		"# dn: uid=jürgen,dc=example,dc=com\n" +
		"dn:: dWlkPWrDvHJnZW4sZGM9ZXhhbXBsZSxkYz1jb20=\r\n" +
		"cn::SsO8cmdlbiBHcm/Dnw==\n"
	entries, err := parseLDIF(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.Equal(t, `uid=smith\, john,ou=people,dc=example,dc=com`, entries[0].dn)
	assert.Equal(t, []attr{{"cn", "John Smith"}}, entries[0].attrs)
	assert.Equal(t, "uid=jürgen,dc=example,dc=com", entries[1].dn)
	assert.Equal(t, []attr{{"cn", "Jürgen Groß"}}, entries[1].attrs)

	for _, bad := range []string{
		"cn: no dn\n",
		"dn: cn=x\nchangetype: add\n",
		"dn: cn=x\njpegPhoto:< file:///etc/passwd\n",
		"dn: cn=x\ncn:: !!!\n",
		"dn: cn=x\nno colon\n",
		" continuation first\n",
	} {
		_, err := parseLDIF(strings.NewReader(bad))
		assert.Error(t, err, bad)
	}
}

func TestWriteLDIFRoundTrip(t *testing.T) {
	entries := []*entry{{dn: "uid=jürgen,dc=example,dc=com", attrs: []attr{
		{"cn", "Jürgen Groß"}, {"description", " leading space"}, {"description", ":colon"}, {"sn", "plain"},
	}}}
	var buf bytes.Buffer
	require.NoError(t, writeLDIF(&buf, entries, 0, nil))
	assert.Contains(t, buf.String(), "sn: plain\n")
	back, err := parseLDIF(&buf)
	require.NoError(t, err)
	assert.Equal(t, entries, back)
}

func TestPrepareSeed(t *testing.T) {
	entries := []*entry{
		{dn: "uid=a,ou=people,dc=example,dc=com", attrs: []attr{{"uid", "a"}, {"userPassword", "secret"}}},
		{dn: "cn=g,ou=groups,dc=example,dc=com", attrs: []attr{
			{"objectClass", "groupOfNames"}, {"member", "UID=A, OU=People,dc=example,dc=com"},
		}},
	}
	require.NoError(t, prepareSeed(entries, map[string][]string{
		"cn=g,ou=groups,dc=example,dc=com": {"uid=user000001,ou=people,dc=example,dc=com"},
	}))
	assert.Regexp(t, `^\{SSHA\}`, entries[0].attrs[1].value)
	assert.True(t, entries[0].has("memberOf", "cn=g,ou=groups,dc=example,dc=com"), "DNs compared parsed, case-insensitively")
	assert.True(t, entries[1].has("member", "uid=user000001,ou=people,dc=example,dc=com"))

	assert.Error(t, prepareSeed(entries, map[string][]string{"cn=missing,dc=example,dc=com": {"x"}}))
}
