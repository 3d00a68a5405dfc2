package ldaptest

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/glauth/glauth/v2/pkg/config"
)

// User is one account of a test directory.
type User struct {
	// Name is the login name: the uid attribute and the first RDN of the
	// user's DN. Names are matched case-insensitively by GLAuth, so two users
	// may not differ only in case.
	Name string
	// Password is the plain-text password. The server keeps only its
	// SHA-256 (GLAuth's PassSHA256). It must not be empty: GLAuth accepts any
	// password for a user without a hash.
	Password string
	// GivenName, SN and Mail become the givenName, sn and mail attributes
	// when set. Mail (with userPrincipalName) is also a bind name.
	GivenName, SN, Mail string
	// PrimaryGroup names the user's primary group: it is part of the user's
	// DN (uid=<Name>,cn=<PrimaryGroup>,ou=users,<BaseDN>) and one of its
	// memberOf values. Required.
	PrimaryGroup string
	// Groups names the user's other groups.
	Groups []string
	// Disabled marks the account inactive (accountStatus: inactive). GLAuth's
	// config backend does not refuse the bind of a disabled user: it only
	// changes the attribute. Filter on (accountStatus=active) to exclude them.
	Disabled bool
}

// Group is one group of a test directory.
type Group struct {
	// Name is the cn of the group: its DN is cn=<Name>,ou=groups,<BaseDN>.
	Name string
	// Include names groups nested in this one (GLAuth's IncludeGroups): their
	// members are members of this group too, in its uniqueMember and
	// memberUid values and in their own memberOf values. Nesting is
	// transitive and must not form a cycle.
	Include []string
}

// Directory is the content of a test directory server. It is plain data:
// build one by hand, or start from DemoDirectory or Generate.
type Directory struct {
	// BaseDN is the root of the tree, for example dc=example,dc=com. It must
	// be lower case without spaces: GLAuth compares it as a raw string.
	BaseDN string
	// Users and Groups are the entries, in the order the server returns them.
	Users  []User
	Groups []Group
	// ServiceAccount names the user that may search anywhere below BaseDN
	// (ou=groups included), the account for LDAP_SYNC_USER_USERNAME or
	// LDAP_AUTH_CONNECTION_USERNAME. Other users may search only BaseDN and
	// ou=users,<BaseDN>, enough for a login search run as the user. Empty
	// means no such account.
	ServiceAccount string
}

//go:embed testdata/demo.toml
var demoTOML []byte

// DemoDirectory returns the seeded demo directory, loaded from the embedded
// file testdata/demo.toml. See the package documentation for its users,
// groups and (demo only) passwords. Each call returns a fresh copy that the
// caller may change.
func DemoDirectory() Directory {
	var d Directory
	dec := toml.NewDecoder(bytes.NewReader(demoTOML))
	if _, err := dec.Decode(&d); err != nil {
		// The file is part of the package and covered by its tests.
		panic("ldaptest: embedded testdata/demo.toml: " + err.Error())
	}
	return d
}

// GeneratedPassword returns the password Generate gives the user named name.
func GeneratedPassword(name string) string { return name + "-password" }

// Generate returns a deterministic directory of users ordinary users and
// groups groups below dc=example,dc=com, for sync tests and benchmarks, plus
// the service account svc (password GeneratedPassword("svc")) in its own
// group svcaccts. So Users has users+1 entries and Groups has groups+1.
//
// User i is named user%05d (user00000, user00001, ...), has the password
// GeneratedPassword(name), given name "User", surname the number and mail
// <name>@example.com. Group j is named group%04d. User i's primary group is
// group i%groups and it is also a member of groups (7i+1)%groups and
// (13i+3)%groups when those differ; every tenth group nests the next one.
// Generate panics if users or groups is negative, or if users > 0 and
// groups == 0.
func Generate(users, groups int) Directory {
	if users < 0 || groups < 0 || (users > 0 && groups == 0) {
		panic(fmt.Sprintf("ldaptest: Generate(%d, %d): need users >= 0 and groups >= 1", users, groups))
	}
	d := Directory{BaseDN: "dc=example,dc=com", ServiceAccount: "svc"}
	d.Groups = make([]Group, 0, groups+1)
	for j := range groups {
		g := Group{Name: fmt.Sprintf("group%04d", j)}
		if j%10 == 0 && j+1 < groups {
			g.Include = []string{fmt.Sprintf("group%04d", j+1)}
		}
		d.Groups = append(d.Groups, g)
	}
	d.Groups = append(d.Groups, Group{Name: "svcaccts"})
	d.Users = make([]User, 0, users+1)
	for i := range users {
		name := fmt.Sprintf("user%05d", i)
		primary := i % groups
		u := User{
			Name:         name,
			Password:     GeneratedPassword(name),
			GivenName:    "User",
			SN:           fmt.Sprintf("%05d", i),
			Mail:         name + "@example.com",
			PrimaryGroup: d.Groups[primary].Name,
		}
		seen := map[int]bool{primary: true}
		for _, j := range []int{(7*i + 1) % groups, (13*i + 3) % groups} {
			if !seen[j] {
				seen[j] = true
				u.Groups = append(u.Groups, d.Groups[j].Name)
			}
		}
		d.Users = append(d.Users, u)
	}
	d.Users = append(d.Users, User{
		Name: "svc", Password: GeneratedPassword("svc"), GivenName: "Service", SN: "Account",
		PrimaryGroup: "svcaccts",
	})
	return d
}

// ErrInvalidDirectory is wrapped by every error of Directory.Validate.
var ErrInvalidDirectory = errors.New("invalid directory")

// Validate reports every problem of d that would make GLAuth misbehave, one
// error each, joined with errors.Join and each wrapping ErrInvalidDirectory:
// a missing or non-lower-case BaseDN, empty or duplicate names (GLAuth
// compares names case-insensitively), empty passwords, unknown group names,
// cycles of nested groups, and an unknown service account. NewServer and
// SetDirectory call it.
func (d Directory) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("ldaptest: %w: "+format, append([]any{ErrInvalidDirectory}, args...)...))
	}
	d.validateBaseDN(bad)
	groups := d.validateGroups(bad)
	users := d.validateUsers(groups, bad)
	if d.ServiceAccount != "" && !users[strings.ToLower(d.ServiceAccount)] {
		bad("service account %q is not a user", d.ServiceAccount)
	}
	return errors.Join(errs...)
}

// validateBaseDN reports an empty BaseDN, or one GLAuth would not match.
func (d Directory) validateBaseDN(bad func(format string, args ...any)) {
	switch {
	case d.BaseDN == "":
		bad("empty BaseDN")
	case d.BaseDN != strings.ToLower(d.BaseDN) || strings.ContainsAny(d.BaseDN, " \t"):
		bad("BaseDN %q must be lower case without spaces (GLAuth compares it as a raw string)", d.BaseDN)
	}
}

// validateGroups reports unnamed, duplicate and unknown included groups and
// cycles; it returns the index of each group by lower-case name.
func (d Directory) validateGroups(bad func(format string, args ...any)) map[string]int {
	groups := make(map[string]int, len(d.Groups))
	for i, g := range d.Groups {
		key := strings.ToLower(g.Name)
		if g.Name == "" {
			bad("group %d has an empty name", i)
			continue
		}
		if _, dup := groups[key]; dup {
			bad("duplicate group %q (names are case-insensitive)", g.Name)
			continue
		}
		groups[key] = i
	}
	for _, g := range d.Groups {
		for _, inc := range g.Include {
			if _, ok := groups[strings.ToLower(inc)]; !ok {
				bad("group %q includes unknown group %q", g.Name, inc)
			}
		}
	}
	if cycle := includeCycle(d.Groups, groups); cycle != "" {
		bad("nested groups form a cycle through %q (GLAuth would recurse forever)", cycle)
	}
	return groups
}

// validateUsers reports unnamed and duplicate users, empty passwords and
// unknown groups; it returns the set of lower-case user names.
func (d Directory) validateUsers(groups map[string]int, bad func(format string, args ...any)) map[string]bool {
	users := make(map[string]bool, len(d.Users))
	for i, u := range d.Users {
		if u.Name == "" {
			bad("user %d has an empty name", i)
			continue
		}
		key := strings.ToLower(u.Name)
		if users[key] {
			bad("duplicate user %q (names are case-insensitive)", u.Name)
		}
		users[key] = true
		if u.Password == "" {
			bad("user %q has an empty password (GLAuth would accept any password)", u.Name)
		}
		if u.PrimaryGroup == "" {
			bad("user %q has no primary group", u.Name)
		} else if _, ok := groups[strings.ToLower(u.PrimaryGroup)]; !ok {
			bad("user %q has unknown primary group %q", u.Name, u.PrimaryGroup)
		}
		for _, g := range u.Groups {
			if _, ok := groups[strings.ToLower(g)]; !ok {
				bad("user %q is in unknown group %q", u.Name, g)
			}
		}
	}
	return users
}

// includeCycle returns the name of a group on a cycle of Include edges, or "".
func includeCycle(gs []Group, index map[string]int) string {
	const (
		unseen = iota
		active
		done
	)
	state := make([]int, len(gs))
	var visit func(i int) string
	visit = func(i int) string {
		state[i] = active
		for _, inc := range gs[i].Include {
			j, ok := index[strings.ToLower(inc)]
			if !ok {
				continue
			}
			switch state[j] {
			case active:
				return gs[j].Name
			case unseen:
				if c := visit(j); c != "" {
					return c
				}
			}
		}
		state[i] = done
		return ""
	}
	for i := range gs {
		if state[i] == unseen {
			if c := visit(i); c != "" {
				return c
			}
		}
	}
	return ""
}

// Numbering of the generated GLAuth entries.
const (
	firstGID = 5000
	firstUID = 10000
)

// glauthConfig turns a valid directory into GLAuth's raw configuration, with
// the normalisation GLAuth's main program does (NameFormatAsArray and
// GroupFormatAsArray) and the search capabilities described on Directory.
func (d Directory) glauthConfig() *config.Config {
	backend := config.Backend{
		BaseDN:             d.BaseDN,
		Datastore:          "config",
		NameFormat:         "uid",
		NameFormatAsArray:  []string{"uid"},
		GroupFormat:        "cn",
		GroupFormatAsArray: []string{"cn"},
		SSHKeyAttr:         "sshPublicKey",
	}
	cfg := &config.Config{Backend: backend, Backends: []config.Backend{backend}}

	gid := make(map[string]int, len(d.Groups))
	for i, g := range d.Groups {
		gid[strings.ToLower(g.Name)] = firstGID + i
	}
	for i, g := range d.Groups {
		cg := config.Group{Name: g.Name, GIDNumber: firstGID + i}
		for _, inc := range g.Include {
			cg.IncludeGroups = append(cg.IncludeGroups, gid[strings.ToLower(inc)])
		}
		cfg.Groups = append(cfg.Groups, cg)
	}

	// GLAuth matches a capability's Object against the lower-cased search
	// base as a raw string; "*" matches any base.
	userCaps := []config.Capability{
		{Action: "search", Object: d.BaseDN},
		{Action: "search", Object: "ou=users," + d.BaseDN},
	}
	for _, g := range d.Groups {
		// The branch of each primary group: the search base under which a
		// user's bind DN is the entry's own DN (see Server.Env).
		userCaps = append(userCaps, config.Capability{Action: "search", Object: "cn=" + strings.ToLower(g.Name) + ",ou=users," + d.BaseDN})
	}
	for i, u := range d.Users {
		sum := sha256.Sum256([]byte(u.Password))
		cu := config.User{
			Name:         u.Name,
			PassSHA256:   hex.EncodeToString(sum[:]),
			PrimaryGroup: gid[strings.ToLower(u.PrimaryGroup)],
			UIDNumber:    firstUID + i,
			Mail:         u.Mail,
			GivenName:    u.GivenName,
			SN:           u.SN,
			Disabled:     u.Disabled,
			Capabilities: userCaps,
		}
		if strings.EqualFold(u.Name, d.ServiceAccount) {
			cu.Capabilities = []config.Capability{{Action: "search", Object: "*"}}
		}
		for _, g := range u.Groups {
			cu.OtherGroups = append(cu.OtherGroups, gid[strings.ToLower(g)])
		}
		// GLAuth's FindPosixAccounts runs append(u.OtherGroups, u.PrimaryGroup)
		// on every search: with spare capacity, concurrent searches would
		// write into the same backing array (a data race -race reports).
		// Clipping makes every such append copy.
		cu.OtherGroups = slices.Clip(cu.OtherGroups)
		cfg.Users = append(cfg.Users, cu)
	}
	return cfg
}
