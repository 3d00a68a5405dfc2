// Package dstest runs Debian's real 389 Directory Server (389-ds-base 2.3,
// the server behind Red Hat Directory Server and FreeIPA) for tests: one
// instance in a temporary directory, listening on 127.0.0.1 on free ports,
// without systemd, gone when it is stopped.
//
// An instance is made with dscreate from-file through a prefix install (a
// copy of defaults.inf whose paths all point into the temporary directory,
// with_systemd = 0), then configured in its dse.ldif before ns-slapd starts
// in the foreground (-d 0) as a child of the test binary:
//
//   - the LMDB backend (db_lib = mdb), which shuts down in under a second
//     where Berkeley DB takes about three;
//   - StartTLS and LDAPS with a certificate from a CA made at start
//     (internal/testcert), imported into the instance's NSS database;
//   - the memberOf plugin, over member and uniqueMember, so memberOf lists
//     nested groups too (memberOfSkipNested is off), and referential
//     integrity;
//   - a global password policy: three wrong passwords lock an account until
//     an administrator unlocks it (Server.Unlock), and a password set by an
//     administrator must be changed (passwordMustChange), which the seed and
//     AddUser avoid;
//   - the 7-bit check plugin off, so a uid may be UTF-8;
//   - access: authenticated identities read everything but userPassword;
//     anonymous binds read the root DSE only.
//
// The seed (dc=example,dc=com) is added over LDAP after the start, so the
// memberOf plugin writes every memberOf:
//
//	DN                                               password
//	cn=Directory Manager (the root DN)               admin-password
//	cn=svc,ou=services,dc=example,dc=com             svc-password          the service account
//	uid=alice,ou=people,dc=example,dc=com            alice-password        ldapusers, readers, staff (unique)
//	uid=bob,ou=people,dc=example,dc=com              bob-password          readers, marvel
//	uid=carol,ou=people,dc=example,dc=com            carol-password        ldapusers, marvel, nested-child
//	uid=jürgen,ou=people,dc=example,dc=com           jürgen-password       ldapusers
//	uid=smith\, john,ou=people,dc=example,dc=com     smith, john-password  ldapusers
//	uid=frank,ou=people,dc=example,dc=com            frank-password        ldapusers; nsAccountLock: true (disabled)
//	uid=gina,ou=people,dc=example,dc=com             gina-password         unique-child (unique)
//
// Groups under ou=groups: groupOfNames ldapusers, readers, marvel,
// nested-child (carol), nested-parent (the group nested-child); and
// groupOfUniqueNames staff (alice), unique-child (gina) and unique-parent
// (the group unique-child).
//
// Start and Shared skip the test when 389-ds-base is not installed
// ("apt-get install 389-ds-base"); with LDAPAUTH_REQUIRE_389DS=1 in the
// environment, as CI sets it, they fail it instead. Nothing is installed
// here. Creating an instance takes about six seconds (dscreate), so a test
// binary shares one (Shared); tests that change the directory make their
// own entries (AddUser, AddGroup) rather than change the seed's.
//
// A Server is safe for concurrent use by multiple goroutines, except that
// Stop and Restart must not run concurrently with each other.
package dstest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

	// AdminDN is the root DN: no access rule and no policy applies to it.
	AdminDN       = "cn=Directory Manager"
	AdminPassword = "admin-password"

	// ServiceDN reads every entry except passwords.
	ServiceDN       = "cn=svc," + ServicesDN
	ServicePassword = "svc-password"

	// MaxFailures is the policy's passwordMaxFailure: this many wrong
	// passwords in a row lock an account.
	MaxFailures = 3

	// DisabledUser is the seed user whose entry has nsAccountLock: true,
	// the way FreeIPA (ipa user-disable) and dsidm disable an account.
	DisabledUser = "frank"

	// RequireEnv is the environment variable that turns a missing 389-DS
	// from a skipped test into a failed one. CI sets it to 1.
	RequireEnv = "LDAPAUTH_REQUIRE_389DS"
)

// ErrNotInstalled is returned by New when 389-ds-base (or a tool it needs)
// is missing from this machine.
var ErrNotInstalled = errors.New("dstest: 389 Directory Server is not installed (apt-get install 389-ds-base)")

// Options configures a server. The zero value is the seed alone.
type Options struct {
	// GeneratedUsers is how many users to add to ou=people besides the
	// seed: uid GeneratedUID(1) ... GeneratedUID(n), inetOrgPerson with cn
	// "Generated User 000001", sn "User000001", givenName "Generated",
	// mail "user000001@example.com", password GeneratedPassword, each a
	// member of ldapusers.
	GeneratedUsers int
}

// GeneratedPassword is the password of every generated user.
const GeneratedPassword = "generated-password"

// GeneratedUID returns the uid of the i-th generated user (1-based).
func GeneratedUID(i int) string { return fmt.Sprintf("user%06d", i) }

// Server is a running 389-DS instance. Its exported fields are set by New
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
	// WrongCAFile is an unrelated CA: verification with it must fail.
	WrongCAFile string

	// Dir is the temporary directory holding the whole instance.
	Dir string

	// GeneratedUsers is Options.GeneratedUsers.
	GeneratedUsers int

	configDir, errorsLog string
	ca, wrongCA          *testcert.CA

	proc proctest.Slot
}

// Start starts a server of its own for tb, or skips tb when 389-DS is not
// installed (fails it under LDAPAUTH_REQUIRE_389DS=1). It stops when the
// test ends. Prefer Shared unless the test restarts the server.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := New(Options{})
	check(tb, err)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("389-DS errors log (tail):\n%s", s.Log())
		}
		s.Stop()
	})
	return s
}

func check(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("%v; %s=1 requires it", err, RequireEnv)
		}
		tb.Skipf("%v; CI sets %s=1 to fail instead of skipping", err, RequireEnv)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

var shared struct {
	once sync.Once
	s    *Server
	err  error
	opts Options
}

// SetSharedOptions sets the options of the server Shared starts; call it
// in TestMain before the tests run.
func SetSharedOptions(opts Options) { shared.opts = opts }

// Shared returns the test binary's shared server, starting it on first
// use, or skips tb as Start does. Run stops it. Tests must not change the
// seed's entries: they add their own.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() { shared.s, shared.err = New(shared.opts) })
	check(tb, shared.err)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("shared 389-DS errors log (tail):\n%s", shared.s.Log())
		}
	})
	return shared.s
}

// Run runs the tests of m and then stops the shared server and every
// server New started that is still running. Use it in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(dstest.Run(m)) }
func Run(m *testing.M) int {
	code := m.Run()
	for _, s := range registry.All() {
		s.Stop()
	}
	return code
}

type binaries struct {
	dscreate, nsSlapd, openssl, pk12util, certutil string
}

func findBinaries() (binaries, error) {
	look := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
			if p := filepath.Join(d, name); isFile(p) {
				return p
			}
		}
		return ""
	}
	b := binaries{dscreate: look("dscreate"), nsSlapd: look("ns-slapd"), openssl: look("openssl"),
		pk12util: look("pk12util"), certutil: look("certutil")}
	var missing []string
	for name, p := range map[string]string{"dscreate": b.dscreate, "ns-slapd": b.nsSlapd, "openssl": b.openssl,
		"pk12util": b.pk12util, "certutil": b.certutil} {
		if p == "" {
			missing = append(missing, name)
		}
	}
	for _, f := range []string{defaultsInf, "/etc/dirsrv/schema", "/etc/dirsrv/config"} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("%w: missing %s", ErrNotInstalled, strings.Join(missing, ", "))
	}
	return b, nil
}

const defaultsInf = "/usr/share/dirsrv/inf/defaults.inf"

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// instanceName is the name of every instance (each has its own tree).
const instanceName = "test"

// New creates and starts a server without a testing.TB (for TestMain). The
// caller must call Stop (Run does). The error wraps ErrNotInstalled when
// 389-DS is missing.
func New(opts Options) (s *Server, err error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dstest-")
	if err != nil {
		return nil, fmt.Errorf("dstest: %w", err)
	}
	s = &Server{Dir: dir, GeneratedUsers: opts.GeneratedUsers}
	srv := s
	defer func() {
		if err != nil {
			srv.Stop()
			s = nil
		}
	}()
	registry.Add(s)
	ldapPort, ldapsPort, err := freePorts()
	if err != nil {
		return nil, err
	}
	if err := s.create(bins, ldapPort, ldapsPort); err != nil {
		return nil, err
	}
	if err := s.configureTLS(bins); err != nil {
		return nil, err
	}
	if err := s.configure(ldapPort, ldapsPort); err != nil {
		return nil, err
	}
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(ldapPort)
	s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(ldapsPort)
	if err := s.launch(bins.nsSlapd); err != nil {
		return nil, err
	}
	if err := s.seed(opts); err != nil {
		return nil, err
	}
	return s, nil
}

func freePorts() (int, int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("dstest: finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

// create runs dscreate from-file with a prefix whose defaults.inf puts
// every path of the instance under s.Dir.
func (s *Server) create(bins binaries, ldapPort, ldapsPort int) error {
	inst := filepath.Join(s.Dir, "inst")
	prefix := filepath.Join(s.Dir, "prefix")
	if err := os.MkdirAll(filepath.Join(prefix, "share", "dirsrv", "inf"), 0o755); err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	// dscreate copies the system schema and configuration templates from
	// <sysconf_dir>/dirsrv.
	for _, d := range []string{"schema", "config"} {
		if err := copyDir(filepath.Join("/etc/dirsrv", d), filepath.Join(inst, "etc", "dirsrv", d)); err != nil {
			return err
		}
	}
	if err := writeDefaultsInf(inst, prefix); err != nil {
		return err
	}
	infFile, err := s.writeInstanceInf(ldapPort, ldapsPort)
	if err != nil {
		return err
	}
	cmd := exec.Command(bins.dscreate, "from-file", infFile)
	cmd.Env = append(os.Environ(), "PREFIX="+prefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dstest: dscreate from-file: %w\n%s", err, proctest.LastLines(string(out), 30))
	}
	s.configDir = filepath.Join(inst, "etc", "dirsrv", "slapd-"+instanceName)
	s.errorsLog = filepath.Join(inst, "log", "errors")
	return nil
}

// instancePaths are the defaults.inf keys that put every file of the
// instance under inst, and no systemd.
func instancePaths(inst string) map[string]string {
	return map[string]string{
		"with_systemd":    "0",
		"sysconf_dir":     inst + "/etc",
		"initconfig_dir":  inst + "/etc/default",
		"config_dir":      inst + "/etc/dirsrv/slapd-{instance_name}",
		"schema_dir":      inst + "/etc/dirsrv/slapd-{instance_name}/schema",
		"cert_dir":        inst + "/etc/dirsrv/slapd-{instance_name}",
		"local_state_dir": inst + "/var",
		"run_dir":         inst + "/run",
		"ldapi":           inst + "/run/slapd-{instance_name}.socket",
		"pid_file":        inst + "/run/slapd-{instance_name}.pid",
		"inst_dir":        inst + "/lib/slapd-{instance_name}",
		"tmpfiles_d":      inst + "/tmpfiles.d",
		"lock_dir":        inst + "/lock",
		"log_dir":         inst + "/log",
		"access_log":      inst + "/log/access",
		"audit_log":       inst + "/log/audit",
		"error_log":       inst + "/log/errors",
		"security_log":    inst + "/log/security",
		"db_dir":          inst + "/db",
		"db_home_dir":     inst + "/db",
		"backup_dir":      inst + "/bak",
		"ldif_dir":        inst + "/ldif",
		"tmp_dir":         inst + "/tmp",
	}
}

// writeDefaultsInf writes the prefix's defaults.inf: the system's, with the
// paths of instancePaths.
func writeDefaultsInf(inst, prefix string) error {
	defaults, err := os.ReadFile(defaultsInf)
	if err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	paths := instancePaths(inst)
	lines := strings.Split(string(defaults), "\n")
	for i, line := range lines {
		if k, _, ok := strings.Cut(line, " = "); ok {
			if v, ok := paths[k]; ok {
				lines[i] = k + " = " + v
				delete(paths, k)
			}
		}
	}
	if len(paths) > 0 {
		return fmt.Errorf("dstest: %s lacks keys %v", defaultsInf, paths)
	}
	if err := os.WriteFile(filepath.Join(prefix, "share", "dirsrv", "inf", "defaults.inf"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	return nil
}

// writeInstanceInf writes dscreate's instance file, run as the current
// user and group, and returns its path.
func (s *Server) writeInstanceInf(ldapPort, ldapsPort int) (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("dstest: %w", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "", fmt.Errorf("dstest: %w", err)
	}
	inf := fmt.Sprintf(`[general]
full_machine_name = localhost
start = False
strict_host_checking = False
systemd = False
selinux = False

[slapd]
instance_name = %s
root_dn = %s
root_password = %s
port = %d
secure_port = %d
self_sign_cert = False
db_lib = mdb
user = %s
group = %s

[backend-userroot]
suffix = %s
create_suffix_entry = True
`, instanceName, AdminDN, AdminPassword, ldapPort, ldapsPort, u.Username, g.Name, BaseDN)
	infFile := filepath.Join(s.Dir, "instance.inf")
	if err := os.WriteFile(infFile, []byte(inf), 0o600); err != nil {
		return "", fmt.Errorf("dstest: %w", err)
	}
	return infFile, nil
}

func copyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return fmt.Errorf("dstest: %w", err)
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("dstest: %w", err)
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// serverCertName is the NSS nickname cn=RSA,cn=encryption,cn=config names.
const serverCertName = "Server-Cert"

// configureTLS makes the CAs and imports the server certificate, signed by
// the CA, into the instance's NSS database.
func (s *Server) configureTLS(bins binaries) error {
	var err error
	if s.ca, err = testcert.NewCA("dstest CA"); err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	if s.wrongCA, err = testcert.NewCA("dstest unrelated CA"); err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	pair, err := s.ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	tlsDir := filepath.Join(s.Dir, "tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	caFile, certFile, keyFile, err := testcert.WriteFiles(tlsDir, s.ca, pair)
	if err != nil {
		return err
	}
	s.CAFile, s.CAPEM = caFile, s.ca.CertPEM
	s.WrongCAFile = filepath.Join(tlsDir, "wrong-ca.pem")
	if err := os.WriteFile(s.WrongCAFile, s.wrongCA.CertPEM, 0o644); err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	p12 := filepath.Join(tlsDir, "server.p12")
	db := "sql:" + s.configDir
	pwd := filepath.Join(s.configDir, "pwdfile.txt")
	for _, args := range [][]string{
		{bins.openssl, "pkcs12", "-export", "-in", certFile, "-inkey", keyFile, "-name", serverCertName, "-out", p12, "-passout", "pass:"},
		{bins.certutil, "-A", "-d", db, "-n", "dstest CA", "-t", "CT,,", "-a", "-i", caFile, "-f", pwd},
		{bins.pk12util, "-i", p12, "-d", db, "-k", pwd, "-W", ""},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("dstest: %s: %w\n%s", filepath.Base(args[0]), err, out)
		}
	}
	return nil
}

// configure edits dse.ldif before the first start.
func (s *Server) configure(ldapPort, ldapsPort int) error {
	return patchDSE(filepath.Join(s.configDir, "dse.ldif"), map[string][][2]string{
		"cn=config": {
			{"nsslapd-listenhost", "127.0.0.1"},
			{"nsslapd-securelistenhost", "127.0.0.1"},
			{"nsslapd-security", "on"},
			{"nsslapd-ldapilisten", "off"},
			{"nsslapd-accesslog-logging-enabled", "off"},
			{"nsslapd-auditlog-logging-enabled", "off"},
			{"nsslapd-allow-anonymous-access", "rootdse"},
			{"nsslapd-pwpolicy-local", "on"},
			{"passwordLockout", "on"},
			{"passwordMaxFailure", strconv.Itoa(MaxFailures)},
			{"passwordUnlock", "off"},
			{"passwordMustChange", "on"},
			{"passwordExp", "on"},
			{"passwordGraceLimit", "2"},
			{"passwordIsGlobalPolicy", "on"},
		},
		"cn=MemberOf Plugin,cn=plugins,cn=config": {
			{"nsslapd-pluginEnabled", "on"},
			{"memberOfGroupAttr", "member"},
			{"memberOfGroupAttr", "uniqueMember"},
		},
		// Off so that a uid may be UTF-8 (jürgen), as on OpenLDAP.
		"cn=7-bit check,cn=plugins,cn=config": {
			{"nsslapd-pluginEnabled", "off"},
		},
		"cn=referential integrity postoperation,cn=plugins,cn=config": {
			{"nsslapd-pluginEnabled", "on"},
		},
	})
}

// patchDSE sets attributes of entries of an LDIF file: each listed
// attribute's values replace the entry's.
func patchDSE(path string, changes map[string][][2]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("dstest: %w", err)
	}
	text := strings.ReplaceAll(string(data), "\n ", "") // unfold
	blocks := strings.Split(text, "\n\n")
	done := map[string]bool{}
	for i, b := range blocks {
		lines := strings.Split(strings.Trim(b, "\n"), "\n")
		if len(lines) == 0 || !strings.HasPrefix(strings.ToLower(lines[0]), "dn: ") {
			continue
		}
		dn := strings.TrimSpace(lines[0][4:])
		var attrs [][2]string
		for k, v := range changes {
			if strings.EqualFold(k, dn) {
				attrs, done[k] = v, true
			}
		}
		if attrs == nil {
			continue
		}
		replaced := map[string]bool{}
		for _, a := range attrs {
			replaced[strings.ToLower(a[0])] = true
		}
		kept := lines[:0:0]
		for _, l := range lines {
			name, _, _ := strings.Cut(l, ":")
			if !replaced[strings.ToLower(name)] {
				kept = append(kept, l)
			}
		}
		for _, a := range attrs {
			kept = append(kept, a[0]+": "+a[1])
		}
		blocks[i] = strings.Join(kept, "\n")
	}
	for k := range changes {
		if !done[k] {
			return fmt.Errorf("dstest: %s has no entry %s", path, k)
		}
	}
	return os.WriteFile(path, []byte(strings.Join(blocks, "\n\n")), 0o600)
}

// startTimeout bounds how long ns-slapd may take to answer after it starts.
const startTimeout = 60 * time.Second

// launch starts ns-slapd in the foreground and waits until it answers the
// root DN's bind and accepts connections on the TLS port.
func (s *Server) launch(nsSlapd string) error {
	cmd := exec.Command(nsSlapd, "-D", s.configDir, "-i", filepath.Join(s.Dir, "inst", "run", "ns-slapd.pid"), "-d", "0")
	out := &proctest.TailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p, err := proctest.Start(cmd, proctest.Options{})
	if err != nil {
		return fmt.Errorf("dstest: starting ns-slapd: %w", err)
	}
	s.proc.Set(p)
	if err := p.Ready(context.Background(), startTimeout, 20*time.Millisecond, s.ready); err != nil {
		p.Stop(stopGrace)
		return fmt.Errorf("dstest: ns-slapd %v:\n%s", err, s.Log())
	}
	return nil
}

func (s *Server) ready() error {
	port := strings.TrimPrefix(s.LDAPSURL, "ldaps://")
	c, err := net.DialTimeout("tcp", port, time.Second)
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

// stopGrace is how long ns-slapd has to exit after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// Stop stops ns-slapd, waits for it to exit and removes Dir. It may be
// called more than once.
func (s *Server) Stop() {
	if s.proc.Stop(stopGrace) {
		registry.Remove(s)
		_ = os.RemoveAll(s.Dir)
	}
}

// Restart stops ns-slapd and starts it again with the same data and ports.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.proc.StopRun(stopGrace); err != nil {
		tb.Fatalf("dstest: %v", err)
	}
	bins, err := findBinaries()
	if err == nil {
		err = s.launch(bins.nsSlapd)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// Log returns the end of the instance's errors log.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.errorsLog)
	return proctest.LastLines(string(data), 40)
}

// TLSConfig returns a client TLS configuration that trusts the server's CA
// and verifies the name 127.0.0.1.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// WrongTLSConfig is TLSConfig with the unrelated CA.
func (s *Server) WrongTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.wrongCA.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

const connTimeout = 30 * time.Second

func (s *Server) dial() (*ldap.Conn, error) {
	conn, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(connTimeout)
	return conn, nil
}

// Conn returns a plain connection bound as dn, closed when the test ends.
func (s *Server) Conn(tb testing.TB, dn, password string) *ldap.Conn {
	tb.Helper()
	conn, err := s.dial()
	if err != nil {
		tb.Fatalf("dstest: dial %s: %v", s.URL, err)
	}
	tb.Cleanup(func() { conn.Close() })
	if dn != "" {
		if err := conn.Bind(dn, password); err != nil {
			tb.Fatalf("dstest: bind as %s: %v", dn, err)
		}
	}
	return conn
}

// Admin returns a connection bound as the root DN, closed when the test
// ends.
func (s *Server) Admin(tb testing.TB) *ldap.Conn {
	tb.Helper()
	return s.Conn(tb, AdminDN, AdminPassword)
}

// UserDN returns the DN of the user uid in ou=people.
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + PeopleDN }

// GroupDN returns the DN of the group cn in ou=groups.
func GroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + GroupsDN }

// Password returns the password of a seed user or service account.
func Password(name string) string { return name + "-password" }

// registry holds the servers New started and Stop has not stopped, for Run.
var registry proctest.Registry[*Server]
