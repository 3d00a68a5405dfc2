package benchmarks

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// Mode is the transport a login uses.
type Mode string

// The transports.
const (
	Plain    Mode = "plain"
	StartTLS Mode = "starttls"
	LDAPS    Mode = "ldaps"
)

// Modes lists every transport, in table order.
var Modes = []Mode{Plain, StartTLS, LDAPS}

// Target is one directory server in one transport, with the user every
// contender logs in as. Its fields are read-only once built.
type Target struct {
	// Server names the server: "glauth" or "slapd".
	Server string
	// Mode is the transport.
	Mode Mode
	// URL is ldap://127.0.0.1:PORT (plain and StartTLS) or ldaps://.
	URL string
	// Host and Port are URL's.
	Host string
	Port int

	// CAFile and CAPEM are the CA that signed the server's certificate;
	// CAPool holds it.
	CAFile string
	CAPEM  []byte
	CAPool *x509.CertPool

	// BaseDN is the directory's base.
	BaseDN string
	// SearchBase is where users are searched for (ldapauth's
	// LDAP_AUTH_SEARCH_BASE); uid=<user>,SearchBase binds.
	SearchBase string
	// ObjectClass is the user entries' object class.
	ObjectClass string

	// User and Password log in; WrongPassword must be refused; Mail is the
	// user's mail attribute. UserDN is the user's entry.
	User, Password, WrongPassword, Mail, UserDN string
	// BindDN is the name the user binds with: uid=<user>,SearchBase.
	BindDN string

	// ServiceDN and ServicePassword are a service account that may search
	// every user.
	ServiceDN, ServicePassword string

	// syncedGroups are the group DNs the sync at scale keeps in step.
	syncedGroups []string
}

// Name is "server/mode".
func (t *Target) Name() string { return t.Server + "/" + string(t.Mode) }

// UserFilter is the login search's filter for username, as ldapauth's
// default filters build it.
func (t *Target) UserFilter(username string) string {
	return "(&(objectClass=" + t.ObjectClass + ")(uid=" + username + "))"
}

// Servers are the directory servers of one run.
type Servers struct {
	// Targets lists every server in every mode.
	Targets []*Target
	// SlapdErr says why there is no slapd target, if there is none.
	SlapdErr error

	closers []func()
}

// Close stops the servers.
func (s *Servers) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// StartServers starts the in-process test directory (in a child process,
// see [ServeIfChild]) and, when slapd is installed, a real OpenLDAP. A
// missing slapd is not an error: SlapdErr says why, and the run goes on
// with the test directory alone. The caller must call Close.
func StartServers() (*Servers, error) {
	s := &Servers{}
	dir, err := os.MkdirTemp("", "ldapbench-")
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { os.RemoveAll(dir) })

	gl, err := startGLAuthChild(dir, "demo")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.closers = append(s.closers, gl.stop)
	for _, m := range Modes {
		t, err := newTarget("glauth", m, gl.URL, gl.LDAPSURL, gl.caFile, gl.CAPEM)
		if err != nil {
			s.Close()
			return nil, err
		}
		// The search base is the users' branch, where uid=<user>,<base> is
		// the entry's own DN: GLAuth also binds uid=alice,dc=example,dc=com,
		// but that alias is not the entry's DN and GLAuth answers no Who Am
		// I, so ldapauth could not prove who logged in and refuses it.
		t.BaseDN, t.SearchBase, t.ObjectClass = "dc=example,dc=com", "cn=staff,ou=users,dc=example,dc=com", "posixAccount"
		t.UserDN = "uid=alice,cn=staff,ou=users,dc=example,dc=com"
		t.BindDN = "uid=alice," + t.SearchBase
		t.ServiceDN, t.ServicePassword = "uid=svc,cn=svcaccts,ou=users,dc=example,dc=com", "svc-password"
		s.Targets = append(s.Targets, t)
	}

	sl, err := slapdtest.New(slapdtest.Options{LogLevel: "0"})
	if err != nil {
		s.SlapdErr = err
		if !errors.Is(err, slapdtest.ErrNotInstalled) || os.Getenv(slapdtest.RequireEnv) == "1" {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	s.closers = append(s.closers, sl.Stop)
	for _, m := range Modes {
		t, err := newTarget("slapd", m, sl.URL, sl.LDAPSURL, sl.CAFile, sl.CAPEM)
		if err != nil {
			s.Close()
			return nil, err
		}
		t.BaseDN, t.SearchBase, t.ObjectClass = slapdtest.BaseDN, slapdtest.PeopleDN, "inetOrgPerson"
		t.UserDN = slapdtest.UserDN("alice")
		t.BindDN = t.UserDN
		t.ServiceDN, t.ServicePassword = slapdtest.ServiceDN, slapdtest.ServicePassword
		s.Targets = append(s.Targets, t)
	}
	return s, nil
}

func newTarget(server string, m Mode, plainURL, ldapsURL, caFile string, caPEM []byte) (*Target, error) {
	raw := plainURL
	if m == LDAPS {
		raw = ldapsURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("benchmarks: %s: no certificate in the CA PEM", server)
	}
	return &Target{
		Server: server, Mode: m, URL: raw, Host: host, Port: p,
		CAFile: caFile, CAPEM: caPEM, CAPool: pool,
		User: "alice", Password: "alice-password", WrongPassword: "not-alice-password", Mail: "alice@example.com",
	}, nil
}

// serveEnv is set in the environment of the child process that serves the
// test directory. Its value says which directory: "demo" or a user count
// for ldaptest.Generate.
const serveEnv = "LDAPBENCH_SERVE_GLAUTH"

// glauthInfo is what the child prints on its first line of output.
type glauthInfo struct {
	URL, LDAPSURL string
	CAPEM         []byte

	caFile string
	stop   func()
}

// ServeIfChild serves the test directory and exits if this process was
// started for that by StartServers; otherwise it returns at once. Call it
// first thing in main and in TestMain: StartServers runs the current
// executable again as the server, so that the server's allocations and
// garbage collections are not the client's.
func ServeIfChild() {
	what := os.Getenv(serveEnv)
	if what == "" {
		return
	}
	d := ldaptest.DemoDirectory()
	if what != "demo" {
		n, err := strconv.Atoi(what)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ldapbench: %s=%q: want demo or a number\n", serveEnv, what)
			os.Exit(2)
		}
		d = ldaptest.Generate(n, max(1, n/10))
	}
	srv, err := ldaptest.NewServer(d)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ldapbench:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(glauthInfo{URL: srv.URL(), LDAPSURL: srv.LDAPSURL(), CAPEM: srv.CACertPEM()}); err != nil {
		os.Exit(1)
	}
	// Serve until the parent closes stdin or dies.
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Close()
	os.Exit(0)
}

// startGLAuthChild runs this executable again as the test directory's
// server: what is "demo" or a number of generated users. GLAuth's own log
// lines (refused binds) are discarded.
func startGLAuthChild(dir, what string) (*glauthInfo, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serveEnv+"="+what)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("benchmarks: starting the test directory: %w", err)
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	var info glauthInfo
	if err == nil {
		err = json.Unmarshal(line, &info)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("benchmarks: the test directory did not start (%w): %s", err, strings.TrimSpace(string(line)))
	}
	info.stop = stop
	info.caFile = filepath.Join(dir, "glauth-ca.pem")
	if err := os.WriteFile(info.caFile, info.CAPEM, 0o600); err != nil {
		stop()
		return nil, err
	}
	return &info, nil
}
