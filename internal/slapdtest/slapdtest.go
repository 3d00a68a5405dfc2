// Package slapdtest runs Debian's real OpenLDAP slapd (2.5) for tests, the
// way net/http/httptest runs an HTTP server: on 127.0.0.1, on free ports, in
// a temporary directory, gone when the test ends.
//
// Each server is configured like a small production directory: an mdb
// database for dc=example,dc=com, the memberof, refint and ppolicy overlays,
// StartTLS and LDAPS with a certificate from a throw-away CA, anonymous
// searches refused, and a default size limit of 500 entries that only the
// service account svc is exempt from. It is seeded from the repository's
// testdata/openldap/seed.ldif:
//
//	DN                                               password
//	cn=admin,dc=example,dc=com (rootdn)              admin-password
//	cn=svc,ou=services,dc=example,dc=com             svc-password          reads all but passwords, no size limit
//	cn=svc-limited,ou=services,dc=example,dc=com     svc-limited-password  reads all but passwords, limit 500
//	cn=svc-nopaging,ou=services,dc=example,dc=com    svc-nopaging-password reads all, no size limit, paging refused
//	uid=alice,ou=people,dc=example,dc=com            alice-password        Alice Liddell; ldapusers, readers
//	uid=bob,ou=people,dc=example,dc=com              bob-password          Bob Builder; readers, marvel
//	uid=carol,ou=people,dc=example,dc=com            carol-password        Carol Danvers; ldapusers, marvel, nested-child
//	uid=jürgen,ou=people,dc=example,dc=com           jürgen-password       Jürgen Groß; ldapusers
//	uid=smith\, john,ou=people,dc=example,dc=com     smith, john-password  John Smith; ldapusers
//	uid=dave,ou=people,dc=example,dc=com             dave-password         lockout target (LockoutUser)
//	uid=erin,ou=people,dc=example,dc=com             erin-password         forced-change target (ResetUser)
//
// Groups (groupOfNames under ou=groups): ldapusers, readers, marvel,
// nested-child (carol) and nested-parent (whose only member is the group
// nested-child). Users carry memberOf for their direct groups.
//
// Users read their own entry and the groups; userPassword is writable by
// its owner and usable by anonymous binds only. The default password policy
// locks an account after three wrong passwords (until an administrator
// unlocks it: Server.Unlock) and honours pwdReset (Server.ForcePasswordReset).
// Two consequences for tests: three wrong passwords for alice lock her for
// the rest of that server's life (LockoutUser is there for lockout tests;
// slapd answers the third wrong password before the lock it stores is seen
// by the next bind, so a test waits for pwdAccountLockedTime on the entry
// before binding again), and a password set by the admin with a plain
// modify or the password modify operation must be changed by its user
// before anything but a bind succeeds (Server.SetPassword clears that;
// users added with Server.AddUser are not affected).
//
// Start skips the test when slapd is not installed ("apt-get install slapd
// ldap-utils"); with LDAPAUTH_REQUIRE_SLAPD=1 in the environment, as CI
// sets it, it fails the test instead. The distribution's own slapd service
// and port 389 are never used. Where an AppArmor profile confines
// /usr/sbin/slapd (Ubuntu), it must allow the temporary directory, or slapd
// cannot read its configuration there (Start reports slapd's own words).
//
// A Server is safe for concurrent use by multiple goroutines, except that
// Stop and Restart must not run concurrently with each other.
package slapdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth/internal/proctest"
	"github.com/go-ldapauth/ldapauth/internal/testcert"
)

// Names of the seeded directory.
const (
	BaseDN     = "dc=example,dc=com"
	PeopleDN   = "ou=people," + BaseDN
	GroupsDN   = "ou=groups," + BaseDN
	ServicesDN = "ou=services," + BaseDN

	// AdminDN is slapd's rootdn: no access rule and no limit applies to it.
	AdminDN       = "cn=admin," + BaseDN
	AdminPassword = "admin-password"

	// ServiceDN reads every entry except passwords and has no size limit.
	ServiceDN       = "cn=svc," + ServicesDN
	ServicePassword = "svc-password"
	// LimitedServiceDN reads like ServiceDN but has the default size limit
	// (DefaultSizeLimit), paged searches included.
	LimitedServiceDN       = "cn=svc-limited," + ServicesDN
	LimitedServicePassword = "svc-limited-password"
	// NoPagingServiceDN reads like ServiceDN, has no size limit, and is
	// refused the paged results control (adminLimitExceeded), like servers
	// where paging is switched off.
	NoPagingServiceDN       = "cn=svc-nopaging," + ServicesDN
	NoPagingServicePassword = "svc-nopaging-password"

	// DefaultPolicyDN is the ppolicy_default entry.
	DefaultPolicyDN = "cn=default,ou=policies," + BaseDN
	// MaxFailures is the policy's pwdMaxFailure: this many wrong passwords
	// in a row lock an account.
	MaxFailures = 3
	// DefaultSizeLimit is slapd's sizelimit for every identity but the
	// rootdn, ServiceDN and NoPagingServiceDN.
	DefaultSizeLimit = 500

	// LockoutUser is the seed user reserved for lockout tests.
	LockoutUser = "dave"
	// ResetUser is the seed user reserved for forced-password-change tests.
	ResetUser = "erin"

	// GeneratedPassword is the password of every generated user.
	GeneratedPassword = "generated-password"

	// RequireEnv is the environment variable that turns a missing slapd
	// from a skipped test into a failed one. CI sets it to 1.
	RequireEnv = "LDAPAUTH_REQUIRE_SLAPD"
)

// ErrNotInstalled is returned by New when slapd, slapadd or the OpenLDAP
// modules are missing from this machine.
var ErrNotInstalled = errors.New("slapdtest: slapd is not installed (apt-get install slapd ldap-utils)")

// Options configures a server. The zero value is the seed alone.
type Options struct {
	// GeneratedUsers is how many users to add to ou=people besides the
	// seed: uid GeneratedUID(1) ... GeneratedUID(n), inetOrgPerson with
	// cn "Generated User 000001", sn "User000001", givenName "Generated",
	// mail "user000001@example.com", password GeneratedPassword. They are
	// loaded with slapadd before slapd starts (5,000 take a fraction of a
	// second), so tests and benchmarks can run against large directories.
	// At most 999,999.
	GeneratedUsers int

	// GeneratedUserGroups names seed groups (their cn, e.g. "ldapusers")
	// that every generated user is a member of; the users' memberOf says so
	// as the memberof overlay would have.
	GeneratedUserGroups []string

	// SeedFile is the LDIF the directory starts with. Empty means the
	// repository's testdata/openldap/seed.ldif. It is loaded with slapadd:
	// the helper hashes cleartext userPassword values and writes memberOf
	// for the members of every groupOfNames, since slapadd runs no overlay.
	SeedFile string

	// ACL is slapd.conf access rules ("access to ... by ...") placed
	// before the built-in ones, so they win for what they match: a test
	// can hide an entry or an attribute from an identity, as a production
	// directory's rules may. Rules that should leave the rest to the
	// built-in ones end with "by * break".
	ACL string

	// SyncProv adds the syncprov overlay (RFC 4533 content
	// synchronisation, module syncprov.so), with entryCSN and entryUUID
	// indexed and a checkpoint after every write, so refreshOnly and
	// refreshAndPersist searches work, the cookie surviving a restart.
	SyncProv bool
	// SessionLog is syncprov-sessionlog's size (with SyncProv): the number
	// of deletions syncprov remembers, so that a refresh with a recent
	// cookie answers with a delete phase (the deleted entries' entryUUIDs).
	// Zero, or a cookie older than the log, gives a present phase instead
	// (the entryUUIDs of every unchanged entry).
	SessionLog int
	// ReloadHint (syncprov-reloadhint, with SyncProv) makes syncprov
	// honour the sync request's reloadHint: a cookie that neither the
	// session log nor the database can serve (the entry of its CSN has
	// changed since) is then refused with e-syncRefreshRequired rather
	// than served with a present phase.
	ReloadHint bool

	// LogLevel is slapd's debug level (-d), e.g. "stats" (connections and
	// operations, the default), "stats,acl" or "0". The output is kept in
	// memory (Server.Log) and written to the test log if the test fails.
	LogLevel string
}

// Server is a running slapd. Its exported fields are set by Start and New
// and must not be changed.
type Server struct {
	// URL is the plain listener, ldap://127.0.0.1:PORT; it offers StartTLS.
	URL string
	// LDAPSURL is the TLS listener, ldaps://127.0.0.1:PORT.
	LDAPSURL string

	// CAFile and CAPEM are the CA that signed the server's certificate
	// (SANs 127.0.0.1 and localhost).
	CAFile string
	CAPEM  []byte
	// WrongCAFile and WrongCAPEM are an unrelated CA: verification with it
	// must fail.
	WrongCAFile string
	WrongCAPEM  []byte

	// Dir is the temporary directory with slapd.conf, the database and the
	// certificates; Stop removes it.
	Dir string

	// GeneratedUsers is Options.GeneratedUsers.
	GeneratedUsers int

	slapd, confPath, level string
	ldapPort, ldapsPort    int
	ca, wrongCA            *testcert.CA
	log                    *proctest.TailBuffer

	proc proctest.Slot
}

// Start starts a server with the seed only, or skips tb if slapd is not
// installed (fails it if LDAPAUTH_REQUIRE_SLAPD=1). The server stops when
// the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith is Start with options.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := New(opts)
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("%v; %s=1 requires it", err, RequireEnv)
		}
		tb.Skipf("%v; CI sets %s=1 to fail instead of skipping", err, RequireEnv)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("slapd log (the last 256 KiB):\n%s", s.Log())
		}
		s.Stop()
	})
	return s
}

// New starts a server without a testing.TB, for a server shared by a whole
// test binary (in TestMain, with Run). The caller must call Stop. The error
// wraps ErrNotInstalled when slapd is missing.
func New(opts Options) (s *Server, err error) {
	if opts.GeneratedUsers < 0 || opts.GeneratedUsers > 999_999 {
		return nil, fmt.Errorf("slapdtest: GeneratedUsers %d out of range 0..999999", opts.GeneratedUsers)
	}
	bins, err := findOpenLDAP()
	if err != nil {
		return nil, err
	}
	seedFile := opts.SeedFile
	if seedFile == "" {
		if seedFile, err = defaultSeedFile(); err != nil {
			return nil, err
		}
	}
	level := opts.LogLevel
	if level == "" {
		level = "stats"
	}

	if opts.SyncProv && !isFile(filepath.Join(bins.modulePath, "syncprov.so")) {
		return nil, fmt.Errorf("%w: missing %s", ErrNotInstalled, filepath.Join(bins.modulePath, "syncprov.so"))
	}
	dir, err := os.MkdirTemp("", "slapdtest-")
	if err != nil {
		return nil, fmt.Errorf("slapdtest: %w", err)
	}
	s = &Server{
		Dir:            dir,
		GeneratedUsers: opts.GeneratedUsers,
		slapd:          bins.slapd,
		confPath:       filepath.Join(dir, "slapd.conf"),
		level:          level,
		log:            &proctest.TailBuffer{},
	}
	started := s // "return nil, err" sets s to nil before the deferred Stop
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	if err := s.writeFiles(bins, opts); err != nil {
		return nil, err
	}
	if err := s.load(bins.slapadd, seedFile, opts); err != nil {
		return nil, err
	}
	if err := s.startOnFreePorts(); err != nil {
		return nil, err
	}
	registry.Add(s)
	return s, nil
}

type openLDAP struct {
	slapd, slapadd, modulePath, schemaDir string
}

// findOpenLDAP locates Debian's slapd, slapadd, modules and schemas.
func findOpenLDAP() (openLDAP, error) {
	look := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec"} {
			if p := filepath.Join(d, name); isFile(p) {
				return p
			}
		}
		return ""
	}
	o := openLDAP{slapd: look("slapd"), slapadd: look("slapadd"), modulePath: "/usr/lib/ldap", schemaDir: "/etc/ldap/schema"}
	var missing []string
	if o.slapd == "" {
		missing = append(missing, "slapd")
	}
	if o.slapadd == "" {
		missing = append(missing, "slapadd")
	}
	for _, m := range []string{"back_mdb", "memberof", "refint", "ppolicy"} {
		if !isFile(filepath.Join(o.modulePath, m+".so")) {
			missing = append(missing, filepath.Join(o.modulePath, m+".so"))
		}
	}
	for _, sc := range []string{"core", "cosine", "inetorgperson", "nis"} {
		if !isFile(filepath.Join(o.schemaDir, sc+".schema")) {
			missing = append(missing, filepath.Join(o.schemaDir, sc+".schema"))
		}
	}
	if len(missing) > 0 {
		return o, fmt.Errorf("%w: missing %s", ErrNotInstalled, strings.Join(missing, ", "))
	}
	return o, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// defaultSeedFile finds testdata/openldap/seed.ldif at the module root:
// from this source file's location, or else upwards from the working
// directory.
func defaultSeedFile() (string, error) {
	const rel = "testdata/openldap/seed.ldif"
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for {
			if p := filepath.Join(d, rel); isFile(p) {
				return p, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("slapdtest: %s not found; set Options.SeedFile", rel)
}

// writeFiles writes the certificates and slapd.conf.
func (s *Server) writeFiles(bins openLDAP, opts Options) error {
	var err error
	if s.ca, err = testcert.NewCA("slapdtest CA"); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	if s.wrongCA, err = testcert.NewCA("slapdtest unrelated CA"); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	pair, err := s.ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	tlsDir := filepath.Join(s.Dir, "tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	caFile, certFile, keyFile, err := testcert.WriteFiles(tlsDir, s.ca, pair)
	if err != nil {
		return err
	}
	s.CAFile, s.CAPEM = caFile, s.ca.CertPEM
	s.WrongCAFile, s.WrongCAPEM = filepath.Join(s.Dir, "wrong-ca.pem"), s.wrongCA.CertPEM
	if err := os.WriteFile(s.WrongCAFile, s.WrongCAPEM, 0o644); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	if err := os.Mkdir(filepath.Join(s.Dir, "db"), 0o700); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	err = writeConf(s.confPath, confData{
		Dir: s.Dir, ModulePath: bins.modulePath, SchemaDir: bins.schemaDir,
		CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ACL: opts.ACL,
		SyncProv: opts.SyncProv, SessionLog: opts.SessionLog, ReloadHint: opts.ReloadHint,
		LargeGroups: opts.GeneratedUsers > 0 && len(opts.GeneratedUserGroups) > 0,
	})
	if err != nil {
		return fmt.Errorf("slapdtest: writing slapd.conf: %w", err)
	}
	return nil
}

// load fills the database with slapadd: the seed, then the generated users.
func (s *Server) load(slapadd, seedFile string, opts Options) error {
	f, err := os.Open(seedFile)
	if err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	entries, err := parseLDIF(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("slapdtest: %s: %w", seedFile, err)
	}

	var (
		extra     = make(map[string][]string)
		memberOfs = make([]string, 0, len(opts.GeneratedUserGroups))
	)
	for _, g := range opts.GeneratedUserGroups {
		gdn := GroupDN(g)
		k, err := dnKey(gdn)
		if err != nil {
			return fmt.Errorf("slapdtest: GeneratedUserGroups %q: %w", g, err)
		}
		members := make([]string, opts.GeneratedUsers)
		for i := range members {
			members[i] = UserDN(GeneratedUID(i + 1))
		}
		extra[k] = members
		memberOfs = append(memberOfs, gdn)
	}
	if err := prepareSeed(entries, extra); err != nil {
		return fmt.Errorf("slapdtest: %s: %w", seedFile, err)
	}

	// -q: no consistency checks and one final sync, which is what makes
	// bulk loads fast; the input is generated, so the checks buy nothing.
	cmd := exec.Command(slapadd, "-f", s.confPath, "-q")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("slapdtest: slapadd: %w", err)
	}
	werr := writeLDIF(stdin, entries, opts.GeneratedUsers, memberOfs)
	if cerr := stdin.Close(); werr == nil {
		werr = cerr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("slapdtest: slapadd: %w\n%s", err, out.String())
	}
	if werr != nil {
		return fmt.Errorf("slapdtest: writing to slapadd: %w", werr)
	}
	return nil
}

func writeLDIF(w io.Writer, entries []*entry, generated int, memberOf []string) error {
	lw := &ldifWriter{w: bufio.NewWriterSize(w, 256*1024)}
	for _, e := range entries {
		lw.entry(e)
	}
	if generated > 0 {
		hash := hashSSHA(GeneratedPassword) // one salt for all: hashing is not what is tested
		for i := 1; i <= generated; i++ {
			uid := GeneratedUID(i)
			n := uid[len("user"):]
			lw.line("dn", UserDN(uid))
			lw.line("objectClass", "inetOrgPerson")
			lw.line("uid", uid)
			lw.line("cn", "Generated User "+n)
			lw.line("sn", "User"+n)
			lw.line("givenName", "Generated")
			lw.line("mail", uid+"@example.com")
			lw.line("userPassword", hash)
			for _, g := range memberOf {
				lw.line("memberOf", g)
			}
			lw.end()
		}
	}
	if lw.err != nil {
		return lw.err
	}
	return lw.w.Flush()
}

// startOnFreePorts picks two free loopback ports and starts slapd on them,
// picking again if another process took a port in between.
func (s *Server) startOnFreePorts() error {
	var err error
	for range 5 {
		if s.ldapPort, err = proctest.FreePort(); err != nil {
			return err
		}
		if s.ldapsPort, err = proctest.FreePort(); err != nil {
			return err
		}
		if s.ldapsPort == s.ldapPort {
			continue
		}
		s.URL = "ldap://127.0.0.1:" + strconv.Itoa(s.ldapPort)
		s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(s.ldapsPort)
		err = s.launch()
		if err == nil || !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

var errAddrInUse = errors.New("slapdtest: port in use")

// startTimeout bounds how long slapd may take to answer after it starts.
const startTimeout = 15 * time.Second

// launch starts slapd on s's ports and waits until it answers an admin
// bind on the plain port and accepts connections on the TLS port.
func (s *Server) launch() error {
	s.log.WriteString(fmt.Sprintf("--- slapdtest: starting slapd on %s and %s\n", s.URL, s.LDAPSURL))
	cmd := exec.Command(s.slapd,
		"-f", s.confPath,
		"-h", s.URL+"/ "+s.LDAPSURL+"/",
		"-d", s.level, // also: stay in the foreground, so Wait and Kill work
	)
	runLog := &proctest.TailBuffer{} // this run's output alone, to tell why it failed
	out := io.MultiWriter(s.log, runLog)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := proctest.Start(cmd, proctest.Options{})
	if err != nil {
		return fmt.Errorf("slapdtest: starting slapd: %w", err)
	}
	s.proc.Set(p)

	err = p.Ready(context.Background(), startTimeout, 10*time.Millisecond, s.ready)
	switch {
	case errors.Is(err, proctest.ErrExited):
		log := runLog.String()
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %v", errAddrInUse, p.Err())
		}
		return fmt.Errorf("slapdtest: slapd %v:\n%s", err, proctest.LastLines(log, 20))
	case err != nil:
		p.Stop(stopGrace)
		return fmt.Errorf("slapdtest: slapd %v:\n%s", err, proctest.LastLines(runLog.String(), 20))
	}
	return nil
}

func (s *Server) ready() error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.ldapsPort), time.Second)
	if err != nil {
		return err
	}
	c.Close()
	conn, err := s.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Bind(AdminDN, AdminPassword)
}

// stopGrace is how long slapd has to exit after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Stop stops slapd, waits for it to exit and removes Dir. It may be called
// more than once; Start calls it when the test ends.
func (s *Server) Stop() {
	if s.proc.Stop(stopGrace) {
		registry.Remove(s)
		_ = os.RemoveAll(s.Dir)
	}
}

// Restart stops slapd and starts it again on the same ports with the same
// data, for tests of reconnection. It fails tb if slapd does not come back.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.restart(); err != nil {
		tb.Fatal(err)
	}
}

func (s *Server) restart() error {
	if err := s.proc.StopRun(stopGrace); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	// The ports were ours a moment ago; a port in TIME_WAIT does not stop
	// slapd (it sets SO_REUSEADDR), another process taking one might.
	var err error
	for range 20 {
		if err = s.launch(); !errors.Is(err, errAddrInUse) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Log returns the end of slapd's output (its -d log) over all its runs.
func (s *Server) Log() string { return s.log.String() }

// TLSConfig returns a client TLS configuration that trusts the server's CA
// and verifies the name 127.0.0.1, for StartTLS and LDAPS.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// WrongTLSConfig is TLSConfig with the unrelated CA: every handshake with
// it must fail certificate verification.
func (s *Server) WrongTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.wrongCA.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// connTimeout bounds every request of the helper's connections, so that a
// broken test fails instead of hanging.
const connTimeout = 30 * time.Second

func (s *Server) dial() (*ldap.Conn, error) {
	conn, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(connTimeout)
	return conn, nil
}

// Dial returns an unbound plain connection to URL, closed when the test
// ends.
func (s *Server) Dial(tb testing.TB) *ldap.Conn {
	tb.Helper()
	conn, err := s.dial()
	if err != nil {
		tb.Fatalf("slapdtest: dial %s: %v", s.URL, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// Conn returns a plain connection bound as dn with password, closed when
// the test ends; it fails tb if the bind fails.
func (s *Server) Conn(tb testing.TB, dn, password string) *ldap.Conn {
	tb.Helper()
	conn := s.Dial(tb)
	if err := conn.Bind(dn, password); err != nil {
		tb.Fatalf("slapdtest: bind as %s: %v", dn, err)
	}
	return conn
}

// Admin returns a connection bound as the rootdn (AdminDN), for changing
// the directory in tests; it is closed when the test ends.
func (s *Server) Admin(tb testing.TB) *ldap.Conn {
	tb.Helper()
	return s.Conn(tb, AdminDN, AdminPassword)
}

// UserDN returns the DN of the user uid in ou=people, uid escaped as
// RFC 4514 requires (uid=smith\, john,ou=people,dc=example,dc=com).
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + PeopleDN }

// GroupDN returns the DN of the group cn in ou=groups.
func GroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + GroupsDN }

// Password returns the password of a seed user or service account: its uid
// or cn followed by "-password".
func Password(name string) string { return name + "-password" }

// GeneratedUID returns the uid of the i-th generated user (1-based):
// user000001, user000002, ...
func GeneratedUID(i int) string { return fmt.Sprintf("user%06d", i) }

// AddUser adds an inetOrgPerson uid to ou=people (cn and sn uid, mail
// uid@example.com) with password (hashed by ppolicy), makes it a member of
// groups (cn values) and returns its DN. The memberof overlay writes its
// memberOf.
func (s *Server) AddUser(tb testing.TB, uid, password string, groups ...string) string {
	tb.Helper()
	conn := s.Admin(tb)
	dn := UserDN(uid)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{uid})
	req.Attribute("sn", []string{uid})
	req.Attribute("mail", []string{uid + "@example.com"})
	req.Attribute("userPassword", []string{password})
	if err := conn.Add(req); err != nil {
		tb.Fatalf("slapdtest: add %s: %v", dn, err)
	}
	for _, g := range groups {
		s.AddMember(tb, g, dn)
	}
	return dn
}

// AddPerson adds an inetOrgPerson at dn, anywhere in the tree, with the
// uid values (cn and sn the first) and password, and makes it a member of
// groups (cn values): for entries AddUser cannot make, such as two entries
// sharing a uid or one entry holding several.
func (s *Server) AddPerson(tb testing.TB, dn string, uids []string, password string, groups ...string) {
	tb.Helper()
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson"})
	req.Attribute("uid", uids)
	req.Attribute("cn", uids[:1])
	req.Attribute("sn", uids[:1])
	req.Attribute("userPassword", []string{password})
	if err := s.Admin(tb).Add(req); err != nil {
		tb.Fatalf("slapdtest: add %s: %v", dn, err)
	}
	for _, g := range groups {
		s.AddMember(tb, g, dn)
	}
}

// DeleteUser deletes the user uid; refint removes it from its groups.
func (s *Server) DeleteUser(tb testing.TB, uid string) {
	tb.Helper()
	s.modify(tb, "delete", UserDN(uid), func(c *ldap.Conn) error {
		return c.Del(ldap.NewDelRequest(UserDN(uid), nil))
	})
}

// AddMember adds memberDN to the group cn; the memberof overlay adds the
// group to the member's memberOf.
func (s *Server) AddMember(tb testing.TB, group, memberDN string) {
	tb.Helper()
	req := ldap.NewModifyRequest(GroupDN(group), nil)
	req.Add("member", []string{memberDN})
	s.modify(tb, "add member to", GroupDN(group), func(c *ldap.Conn) error { return c.Modify(req) })
}

// RemoveMember removes memberDN from the group cn (a groupOfNames keeps at
// least one member: removing the last one fails).
func (s *Server) RemoveMember(tb testing.TB, group, memberDN string) {
	tb.Helper()
	req := ldap.NewModifyRequest(GroupDN(group), nil)
	req.Delete("member", []string{memberDN})
	s.modify(tb, "remove member from", GroupDN(group), func(c *ldap.Conn) error { return c.Modify(req) })
}

// SetPassword sets the password of dn as an administrator would, and then
// clears the pwdReset flag that the policy (pwdMustChange) sets on every
// password change by someone other than the user: the user can log in with
// password normally. Use ForcePasswordReset to keep the flag.
func (s *Server) SetPassword(tb testing.TB, dn, password string) {
	tb.Helper()
	set := ldap.NewModifyRequest(dn, nil)
	set.Replace("userPassword", []string{password})
	clear := ldap.NewModifyRequest(dn, nil)
	clear.Replace("pwdReset", nil)
	s.modify(tb, "set the password of", dn, func(c *ldap.Conn) error {
		if err := c.Modify(set); err != nil {
			return err
		}
		return c.Modify(clear)
	})
}

// ForcePasswordReset sets pwdReset TRUE on dn: its next bind succeeds, with
// the ppolicy response "changeAfterReset" when the client asks for it, and
// every operation but changing the password is refused until it is changed.
func (s *Server) ForcePasswordReset(tb testing.TB, dn string) {
	tb.Helper()
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("pwdReset", []string{"TRUE"})
	s.modify(tb, "force a password reset of", dn, func(c *ldap.Conn) error { return c.Modify(req) })
}

// relaxOID is the Relax Rules control, which lets the rootdn change
// NO-USER-MODIFICATION attributes such as pwdFailureTime.
const relaxOID = "1.3.6.1.4.1.4203.666.5.12"

// Unlock clears the lockout and the failure count of dn.
func (s *Server) Unlock(tb testing.TB, dn string) {
	tb.Helper()
	req := ldap.NewModifyRequest(dn, []ldap.Control{ldap.NewControlString(relaxOID, true, "")})
	req.Replace("pwdAccountLockedTime", nil)
	req.Replace("pwdFailureTime", nil)
	s.modify(tb, "unlock", dn, func(c *ldap.Conn) error { return c.Modify(req) })
}

func (s *Server) modify(tb testing.TB, what, dn string, op func(*ldap.Conn) error) {
	tb.Helper()
	conn, err := s.dial()
	if err == nil {
		defer conn.Close()
		err = conn.Bind(AdminDN, AdminPassword)
	}
	if err == nil {
		err = op(conn)
	}
	if err != nil {
		tb.Fatalf("slapdtest: %s %s: %v", what, dn, err)
	}
}

// Run runs the tests of m and then stops every server still running (a
// server from New that nobody stopped). Use it in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(slapdtest.Run(m)) }
//
// Without it slapd still dies with the test binary (on Linux it gets
// SIGKILL when its parent exits), but its directory stays behind.
func Run(m *testing.M) int {
	code := m.Run()
	for _, s := range registry.All() {
		s.Stop()
	}
	return code
}

// registry holds the servers that New started and Stop has not stopped,
// for Run. This is the package's only state.
var registry proctest.Registry[*Server]
