// Package pgtest runs a PostgreSQL server on 127.0.0.1 for tests: Debian's
// postgresql package (initdb and postgres from /usr/lib/postgresql/*/bin),
// in a temporary directory, on a free port, stopped and removed when the
// test ends.
//
// Without PostgreSQL installed, Start skips the test and says how to
// install it (apt-get install postgresql); with LDAPAUTH_REQUIRE_POSTGRES=1
// in the environment, as CI sets it, it fails the test instead.
//
// PostgreSQL refuses to run as root. Run as root (CI, containers), the
// server runs as the postgres OS user that the Debian package creates, and
// its directory is owned by that user.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/go-ldapauth/ldapauth/internal/proctest"
)

// RequireEnv turns a missing PostgreSQL from a skipped test into a failed
// one when set to 1. CI sets it.
const RequireEnv = "LDAPAUTH_REQUIRE_POSTGRES"

// ErrNotInstalled means initdb and postgres were not found.
var ErrNotInstalled = errors.New("pgtest: PostgreSQL is not installed (apt-get install postgresql)")

const superuser = "ldapauth"

// Server is a running PostgreSQL server.
type Server struct {
	// Dir holds the data directory and the socket; removed by Stop.
	Dir  string
	Port int

	proc    *proctest.Process
	log     *syncBuffer
	dbs     atomic.Int64
	once    sync.Once
	durable bool
}

// Options change how New starts a server.
type Options struct {
	// Durable keeps PostgreSQL's durability defaults (fsync, synchronous
	// commit, full page writes), as a deployment runs it: for benchmarks.
	// Tests leave it off, which is much faster.
	Durable bool
}

// Start starts a server for the test, or skips it (fails it under
// LDAPAUTH_REQUIRE_POSTGRES=1) when PostgreSQL is not installed. The server
// stops when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := New()
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
			tb.Logf("postgres log:\n%s", s.log.String())
		}
		s.Stop()
	})
	return s
}

// Shared is one server for a whole test binary, started lazily by Main:
//
//	var pg pgtest.Shared
//
//	func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }
//
// Tests then take a fresh database each with pg.NewDatabase(t).
type Shared struct {
	srv *Server
	err error
}

// Main starts the server, runs the tests and stops the server; it returns
// m.Run's exit code. A missing PostgreSQL is remembered, not fatal: the
// tests that ask for a database skip or fail then (see NewDatabase).
func (s *Shared) Main(m *testing.M) int {
	s.srv, s.err = New()
	code := m.Run()
	if s.srv != nil {
		s.srv.Stop()
	}
	return code
}

// NewDatabase returns the DSN of a new, empty database on the shared
// server. Without PostgreSQL it skips the test, or fails it under
// LDAPAUTH_REQUIRE_POSTGRES=1, saying why.
func (s *Shared) NewDatabase(tb testing.TB) string {
	tb.Helper()
	switch {
	case errors.Is(s.err, ErrNotInstalled) && os.Getenv(RequireEnv) != "1":
		tb.Skipf("%v; CI sets %s=1 to fail instead of skipping", s.err, RequireEnv)
	case s.err != nil:
		tb.Fatal(s.err)
	}
	return s.srv.NewDatabase(tb)
}

// binDir returns the newest /usr/lib/postgresql/N/bin with initdb and
// postgres, or the directory of pg_config --bindir.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// credential returns the postgres OS user's credential when running as
// root, and nil otherwise.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses root: need the postgres OS user (apt-get install postgresql creates it): %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// New starts a server without a testing.TB; the caller must call Stop.
func New() (*Server, error) { return NewWith(Options{}) }

// NewWith is New with options.
func NewWith(o Options) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{Dir: dir, log: &syncBuffer{}, durable: o.Durable}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", superuser, "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}

	for attempt := 0; ; attempt++ {
		err := s.launch(bin, data, cred)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) || attempt == 4 {
			s.Stop()
			return nil, err
		}
	}
}

var errAddrInUse = errors.New("pgtest: port in use")

const startTimeout = 30 * time.Second

func (s *Server) launch(bin, data string, cred *syscall.Credential) error {
	port, err := proctest.FreePort()
	if err != nil {
		return err
	}
	s.Port = port
	args := []string{"-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", s.Dir, "-c", "max_connections=100"}
	if !s.durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	p, err := proctest.Start(cmd, proctest.Options{Credential: cred, Signal: syscall.SIGINT}) // SIGINT: a fast shutdown
	if err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	s.proc = p
	err = p.Ready(context.Background(), startTimeout, 50*time.Millisecond, s.ready)
	switch {
	case errors.Is(err, proctest.ErrExited) && strings.Contains(s.log.String(), "already in use"):
		return errAddrInUse
	case err != nil:
		return fmt.Errorf("pgtest: postgres %v:\n%s", err, s.log.String())
	}
	return nil
}

func (s *Server) ready() error {
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// DSN returns the URL of the database on the server.
func (s *Server) DSN(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.Port, database)
}

// NewDatabase creates an empty database for the test and returns its URL.
// Tests sharing one server each get their own database.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	dsn, err := s.CreateDatabase(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// CreateDatabase creates an empty database and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return s.DSN(name), nil
}

// Stop stops the server (a fast shutdown, then SIGKILL after ten seconds)
// and removes Dir. It may be called more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.proc.Stop(10 * time.Second)
		os.RemoveAll(s.Dir)
	})
}

// syncBuffer is a bytes.Buffer safe for the server's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// CPUTime returns the CPU time (user and system) the server's processes
// have used so far: the postmaster and its children, the backends, the
// WAL writer and the checkpointer, as Linux reports them in /proc (0
// elsewhere). Other load on the machine inflates wall times far more than
// this.
func (s *Server) CPUTime() time.Duration {
	if s == nil || s.proc == nil {
		return 0
	}
	root := s.proc.Pid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	tick := 100 // USER_HZ: 100 on every Linux architecture Go supports
	var ticks int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command name (in parentheses, which may
		// hold spaces): state ppid ... utime (14th field) stime (15th).
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if pid != root && ppid != root {
			continue
		}
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		ticks += ut + st
	}
	return time.Duration(ticks) * time.Second / time.Duration(tick)
}
