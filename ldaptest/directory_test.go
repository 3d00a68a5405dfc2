package ldaptest

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoDirectory(t *testing.T) {
	d := DemoDirectory()
	require.NoError(t, d.Validate())
	assert.Equal(t, "dc=example,dc=com", d.BaseDN)
	assert.Equal(t, "svc", d.ServiceAccount)

	var groups []string
	for _, g := range d.Groups {
		groups = append(groups, g.Name)
	}
	assert.Equal(t, []string{"staff", "ldapusers", "readers", "marvel", "svcaccts"}, groups)

	users := map[string]User{}
	for _, u := range d.Users {
		users[u.Name] = u
		assert.Equal(t, u.Name+"-password", u.Password, "the documented password rule")
	}
	assert.Len(t, users, 7)
	assert.Equal(t, User{
		Name: "alice", Password: "alice-password", GivenName: "Alice", SN: "Liddell",
		Mail: "alice@example.com", PrimaryGroup: "staff", Groups: []string{"ldapusers", "readers"},
	}, users["alice"])
	assert.Equal(t, []string{"readers", "marvel"}, users["bob"].Groups, "bob is outside the login group")
	assert.Equal(t, []string{"ldapusers", "marvel"}, users["carol"].Groups)
	assert.Equal(t, "Groß", users["jürgen"].SN)
	assert.Contains(t, users, "dave(ops")
	assert.True(t, users["mallory"].Disabled)
	assert.Equal(t, "svcaccts", users["svc"].PrimaryGroup)

	// Each call is a fresh copy.
	d.Users[0].Groups[0] = "changed"
	assert.Equal(t, "ldapusers", DemoDirectory().Users[0].Groups[0])
}

func TestGenerate(t *testing.T) {
	d := Generate(100, 10)
	require.NoError(t, d.Validate())
	assert.Equal(t, d, Generate(100, 10), "deterministic")
	require.Len(t, d.Users, 101)
	require.Len(t, d.Groups, 11)

	u := d.Users[42]
	assert.Equal(t, User{
		Name: "user00042", Password: GeneratedPassword("user00042"), GivenName: "User", SN: "00042",
		Mail: "user00042@example.com", PrimaryGroup: "group0002",
		Groups: []string{"group0005", "group0009"}, // (7*42+1)%10, (13*42+3)%10
	}, u)
	assert.Equal(t, []string{"group0001"}, d.Groups[0].Include)
	assert.Equal(t, User{
		Name: "svc", Password: "svc-password", GivenName: "Service", SN: "Account", PrimaryGroup: "svcaccts",
	}, d.Users[100])
	assert.Equal(t, "svc", d.ServiceAccount)

	empty := Generate(0, 0)
	require.NoError(t, empty.Validate())
	assert.Len(t, empty.Users, 1)

	assert.Panics(t, func() { Generate(1, 0) })
	assert.Panics(t, func() { Generate(-1, 1) })
}

func TestValidate(t *testing.T) {
	valid := func() Directory {
		return Directory{
			BaseDN: "dc=example,dc=com",
			Groups: []Group{{Name: "g"}, {Name: "h"}},
			Users:  []User{{Name: "u", Password: "p", PrimaryGroup: "g"}},
		}
	}
	tests := []struct {
		name   string
		change func(*Directory)
		errors int
	}{
		{"valid", func(*Directory) {}, 0},
		{"empty base", func(d *Directory) { d.BaseDN = "" }, 1},
		{"upper-case base", func(d *Directory) { d.BaseDN = "DC=example,DC=com" }, 1},
		{"base with spaces", func(d *Directory) { d.BaseDN = "dc=example, dc=com" }, 1},
		{"empty group name", func(d *Directory) { d.Groups = append(d.Groups, Group{}) }, 1},
		{"duplicate group", func(d *Directory) { d.Groups = append(d.Groups, Group{Name: "G"}) }, 1},
		{"unknown include", func(d *Directory) { d.Groups[0].Include = []string{"x"} }, 1},
		{"include cycle", func(d *Directory) {
			d.Groups[0].Include = []string{"h"}
			d.Groups[1].Include = []string{"g"}
		}, 1},
		{"self include", func(d *Directory) { d.Groups[0].Include = []string{"g"} }, 1},
		{"empty user name", func(d *Directory) { d.Users[0].Name = "" }, 1},
		{"duplicate user", func(d *Directory) { d.Users = append(d.Users, User{Name: "U", Password: "p", PrimaryGroup: "g"}) }, 1},
		{"empty password", func(d *Directory) { d.Users[0].Password = "" }, 1},
		{"no primary group", func(d *Directory) { d.Users[0].PrimaryGroup = "" }, 1},
		{"unknown primary group", func(d *Directory) { d.Users[0].PrimaryGroup = "x" }, 1},
		{"unknown group", func(d *Directory) { d.Users[0].Groups = []string{"x", "y"} }, 2},
		{"unknown service account", func(d *Directory) { d.ServiceAccount = "x" }, 1},
		{"every problem reported", func(d *Directory) {
			d.BaseDN = ""
			d.Users[0].Password = ""
			d.ServiceAccount = "x"
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.change(&d)
			err := d.Validate()
			if tt.errors == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidDirectory)
			var joined interface{ Unwrap() []error }
			require.True(t, errors.As(err, &joined))
			assert.Len(t, joined.Unwrap(), tt.errors)
			for _, e := range joined.Unwrap() {
				assert.ErrorIs(t, e, ErrInvalidDirectory)
			}

			_, err = NewServer(d)
			assert.ErrorIs(t, err, ErrInvalidDirectory, "NewServer validates")
		})
	}
}
