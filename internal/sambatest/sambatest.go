// Package sambatest provisions and runs a real Samba Active Directory domain
// controller on loopback for the ldapauth Active Directory integration tests.
//
// A DC listens on the fixed LDAP ports 127.0.0.1:389 (plain and StartTLS) and
// 127.0.0.1:636 (LDAPS), so only one can run on a machine at a time. Start
// takes a machine-wide lock file (see LockFile) and waits for it; a test
// binary should start one DC and share it, which Shared does:
//
//	var dc sambatest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		dc.Stop()
//		os.Exit(code)
//	}
//
//	func TestSomething(t *testing.T) {
//		d := dc.Get(t) // starts the DC on first use, skips if Samba is missing
//		...
//	}
//
// The domain (realm LDAPAUTH.TEST, NetBIOS domain LDAPAUTH, base DN
// DC=ldapauth,DC=test) is seeded with the users and groups described by the
// User... and Group... constants. Tests that change data should create their
// own objects rather than change the seeded ones, because the DC is shared.
//
// Samba 4.17 accepts simple binds as the DN, as LDAPAUTH\alice (DownLevel)
// and as alice@ldapauth.test (UPN), case-insensitively, but not as the bare
// sAMAccountName "alice" (data 52e). A failed bind returns result code 49
// with the AD diagnostic "80090308: LdapErr: DSID-0C0903A9, comment:
// AcceptSecurityContext error, data CODE, v1db1"; the smoke tests in this
// package pin down which CODE each seeded account state gives.
//
// Provisioning, starting and seeding take about 9 s (DC.StartupTime).
//
// Starting needs the samba and samba-tool programs (Debian packages samba,
// samba-ad-dc) and root. Without them Start skips the test, unless the
// environment variable LDAPAUTH_REQUIRE_SAMBA is 1 (CI), when it fails it.
package sambatest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth/internal/proctest"
)

// The domain every DC is provisioned with.
const (
	Realm    = "LDAPAUTH.TEST" // Kerberos realm
	DNSName  = "ldapauth.test" // DNS domain, the suffix of userPrincipalName
	Domain   = "LDAPAUTH"      // NetBIOS domain, as in LDAPAUTH\alice
	BaseDN   = "DC=ldapauth,DC=test"
	HostName = "dc1"               // the DC's NetBIOS/host name
	FQDN     = "dc1.ldapauth.test" // the DC's host name; the certificate names it
)

// Seeded users (sAMAccountName). Their passwords are in DC.Users; all of them
// have givenName, sn and mail (NAME@ldapauth.test), and live in CN=Users.
const (
	UserAlice      = "alice"     // enabled; member of ldapusers, readers, big
	UserBob        = "bob"       // enabled; member of ldapusers, marvel
	UserCarol      = "carol"     // enabled; member of nested-child (in nested-parent), ldapusers
	UserDave       = "dave"      // disabled (userAccountControl bit 2)
	UserErin       = "erin"      // account expired (accountExpires in the past)
	UserFrank      = "frank"     // must change password at next logon (pwdLastSet=0)
	UserGrace      = "grace"     // primary group is readers (primaryGroupID), not Domain Users
	UserHeidi      = "heidi"     // password expired (pwdLastSet 60 days ago, domain maximum age 42 days)
	UserIvan       = "ivan"      // locked out (a PSO with lockout threshold 3, then 3 bad binds)
	UserZoe        = "zoë"       // non-ASCII sAMAccountName (UTF-8 "zo\u00eb"); given name Zoë
	UserLockable   = "lockable"  // has the lockout PSO but is not locked; for lockout tests
	UserNoGroups   = "nogroups"  // enabled; in no group but Domain Users
	UserUnicodePwd = "unicodepw" // enabled; non-ASCII password
)

// Seeded groups (cn, also sAMAccountName), global security groups in CN=Users.
const (
	GroupLogin        = "ldapusers"     // alice, bob, carol, zoë, grace, heidi, ivan, dave, erin, frank, unicodepw, lockable
	GroupReaders      = "readers"       // alice, grace (grace's primary group, so not in its member attribute)
	GroupMarvel       = "marvel"        // bob
	GroupNestedParent = "nested-parent" // nested-child
	GroupNestedChild  = "nested-child"  // carol
	GroupBig          = "big"           // alice and BigGroupSize-1 users named big0001...
)

// BigGroupSize is the number of members of GroupBig, more than the 1500
// values Samba returns before it switches to ranged retrieval.
const BigGroupSize = 1600

// LockFile is the machine-wide lock Start holds while a DC runs.
const LockFile = "/tmp/ldapauth-sambatest.lock"

const tempPrefix = "ldapauth-sambatest-"

// RequireEnv names the environment variable that, set to 1, turns a missing
// Samba into a test failure instead of a skip.
const RequireEnv = "LDAPAUTH_REQUIRE_SAMBA"

// DC is a running Samba Active Directory domain controller. Its fields are
// read-only. Its methods are safe for concurrent use.
type DC struct {
	URL      string // ldap://127.0.0.1:389, plain LDAP; StartTLS works on it
	LDAPSURL string // ldaps://127.0.0.1:636
	BaseDN   string // DC=ldapauth,DC=test
	Realm    string // LDAPAUTH.TEST
	Domain   string // LDAPAUTH

	AdminName     string // Administrator
	AdminDN       string // CN=Administrator,CN=Users,DC=ldapauth,DC=test
	AdminPassword string

	// CAFile is the PEM file of the CA that signed the DC's certificate
	// (SANs 127.0.0.1, localhost, dc1.ldapauth.test, dc1). WrongCAFile is
	// a CA that did not, for certificate-failure tests.
	CAFile      string
	WrongCAFile string
	CAPool      *x509.CertPool

	// Users maps every seeded user's sAMAccountName to its password,
	// except the BigGroupSize-1 big#### users, which have none.
	Users map[string]string

	// Dir is the temporary directory holding the provisioned domain
	// (etc/smb.conf, private/sam.ldb, the log files).
	Dir string

	// StartupTime is how long provisioning, starting and seeding took.
	StartupTime time.Duration

	mu      sync.Mutex
	proc    *proctest.Process
	lock    *os.File
	stopped bool
}

// ErrUnavailable is returned by Launch when samba or samba-tool is missing
// or the process is not root.
var ErrUnavailable = errors.New("sambatest: samba is not available")

// Start starts a DC for tb and stops it when tb ends. It skips tb when Samba
// is unavailable unless LDAPAUTH_REQUIRE_SAMBA=1. Ports are fixed, so prefer
// Shared when more than one test needs a DC.
func Start(tb testing.TB) *DC {
	tb.Helper()
	d, err := launchDefault()
	handleLaunchError(tb, err)
	tb.Cleanup(d.Stop)
	return d
}

// launchDefault launches with LaunchTimeout, which bounds the wait for
// another test binary's DC as well.
func launchDefault() (*DC, error) {
	ctx, cancel := context.WithTimeout(context.Background(), LaunchTimeout)
	defer cancel()
	return Launch(ctx)
}

// LaunchTimeout bounds Start and Shared.Get, including the wait for
// LockFile while another test binary runs its DC.
const LaunchTimeout = 5 * time.Minute

func handleLaunchError(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrUnavailable) && os.Getenv(RequireEnv) != "1" {
		tb.Skipf("%v (set %s=1 to make this a failure)", err, RequireEnv)
	}
	tb.Fatal(err)
}

// Shared starts one DC on first use and hands the same DC to every caller.
// The zero value is ready; call Stop from TestMain after m.Run. A Shared is
// safe for concurrent use.
type Shared struct {
	once sync.Once
	dc   *DC
	err  error
}

// Get returns the shared DC, starting it on the first call. It skips or fails
// tb as Start does, every time it is called if the start failed.
func (s *Shared) Get(tb testing.TB) *DC {
	tb.Helper()
	s.once.Do(func() { s.dc, s.err = launchDefault() })
	handleLaunchError(tb, s.err)
	return s.dc
}

// Stop stops the shared DC if it was started. Safe to call more than once.
func (s *Shared) Stop() {
	s.once.Do(func() { s.err = errors.New("sambatest: shared DC already stopped") })
	if s.dc != nil {
		s.dc.Stop()
	}
}

// Launch provisions, starts and seeds a DC. It waits for LockFile until ctx
// ends. The caller must call Stop. Errors wrap ErrUnavailable when Samba is
// not installed or the process is not root.
func Launch(ctx context.Context) (*DC, error) {
	for _, prog := range []string{"samba", "samba-tool"} {
		if _, err := exec.LookPath(prog); err != nil {
			return nil, fmt.Errorf("%w: %s not found in PATH (install the samba and samba-ad-dc packages)", ErrUnavailable, prog)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: a Samba AD DC must run as root", ErrUnavailable)
	}
	start := time.Now()
	lock, err := acquireLock(ctx, LockFile)
	if err != nil {
		return nil, err
	}
	// Holding the lock, any directory left by an earlier DC is stale (its
	// test binary crashed before Stop).
	stale, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("sambatest: %w", err)
	}
	d := &DC{
		URL:           "ldap://127.0.0.1:389",
		LDAPSURL:      "ldaps://127.0.0.1:636",
		BaseDN:        BaseDN,
		Realm:         Realm,
		Domain:        Domain,
		AdminName:     "Administrator",
		AdminDN:       "CN=Administrator,CN=Users," + BaseDN,
		AdminPassword: "Admin-Pass-1",
		Dir:           dir,
		lock:          lock,
	}
	if err := d.launch(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	d.StartupTime = time.Since(start)
	return d, nil
}

func (d *DC) launch(ctx context.Context) error {
	if err := d.provision(ctx); err != nil {
		return err
	}
	if err := d.run(ctx); err != nil {
		return err
	}
	return d.seed()
}

// Stop kills the whole samba process tree, waits for it, removes Dir and
// releases the lock. Safe to call more than once.
func (d *DC) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.stopped = true
	d.proc.Stop(stopTimeout)
	if d.Dir != "" {
		os.RemoveAll(d.Dir)
	}
	if d.lock != nil {
		d.lock.Close() // releases the flock
	}
}

// Restart stops samba and starts it again on the same database, as a DC
// restart does, and waits until Administrator can bind. Every connection
// open to the DC is lost.
func (d *DC) Restart(tb testing.TB) {
	tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		tb.Fatal("sambatest: Restart after Stop")
	}
	d.proc.Stop(stopTimeout)
	if err := d.run(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// Admin returns a connection bound as Administrator over LDAPS (so it may
// set passwords), closed when tb ends.
func (d *DC) Admin(tb testing.TB) *ldap.Conn {
	tb.Helper()
	c, err := d.adminConn()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func (d *DC) adminConn() (*ldap.Conn, error) {
	c, err := ldap.DialURL(d.LDAPSURL, ldap.DialWithTLSConfig(d.TLSConfig()))
	if err != nil {
		return nil, fmt.Errorf("sambatest: dial %s: %w", d.LDAPSURL, err)
	}
	if err := c.Bind(d.AdminDN, d.AdminPassword); err != nil {
		c.Close()
		return nil, fmt.Errorf("sambatest: bind as %s: %w", d.AdminDN, err)
	}
	return c, nil
}

// Dial returns an unbound plain connection to URL, closed when tb ends.
func (d *DC) Dial(tb testing.TB) *ldap.Conn {
	tb.Helper()
	c, err := ldap.DialURL(d.URL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// TLSConfig returns a TLS configuration that trusts only the DC's CA.
func (d *DC) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: d.CAPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// UserDN returns the DN of a user in CN=Users, as seeded: the cn is the
// sAMAccountName.
func (d *DC) UserDN(sam string) string {
	return "CN=" + ldap.EscapeDN(sam) + ",CN=Users," + d.BaseDN
}

// GroupDN returns the DN of a group in CN=Users.
func (d *DC) GroupDN(name string) string {
	return "CN=" + ldap.EscapeDN(name) + ",CN=Users," + d.BaseDN
}

// UPN returns sam's userPrincipalName, sam@ldapauth.test.
func (d *DC) UPN(sam string) string { return sam + "@" + DNSName }

// DownLevel returns sam's down-level logon name, LDAPAUTH\sam.
func (d *DC) DownLevel(sam string) string { return d.Domain + `\` + sam }

// Tool runs samba-tool with args against this DC's database (it adds
// -s DIR/etc/smb.conf -H ldb://DIR/private/sam.ldb), fails tb on error and
// returns the combined output. Example: d.Tool(t, "user", "disable", "bob").
func (d *DC) Tool(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := d.tool(context.Background(), args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func (d *DC) tool(ctx context.Context, args ...string) (string, error) {
	args = append(args, "-s", d.confPath(), "-H", "ldb://"+filepath.Join(d.Dir, "private", "sam.ldb"))
	cmd := exec.CommandContext(ctx, "samba-tool", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("sambatest: samba-tool %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (d *DC) confPath() string { return filepath.Join(d.Dir, "etc", "smb.conf") }
