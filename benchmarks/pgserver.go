package benchmarks

// A PostgreSQL server for the sync at scale, started as the examples' tests
// start theirs (examples/internal/pgtest, which this module may not import):
// Debian's postgresql package, in a temporary directory, on a free port of
// 127.0.0.1, as the postgres OS user when run as root. Unlike the tests'
// server it keeps PostgreSQL's durability defaults (fsync, synchronous
// commit), as a deployment does.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

var errPostgresNotInstalled = errors.New("benchmarks: PostgreSQL is not installed (apt-get install postgresql)")

const superuser = "ldapauth"

// pgServer is a running PostgreSQL server.
type pgServer struct {
	Dir  string
	Port int

	cmd  *exec.Cmd
	done chan struct{}
	log  *pgLog
	dbs  atomic.Int64
	once sync.Once
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
	return "", errPostgresNotInstalled
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
		return nil, fmt.Errorf("benchmarks: postgres: running as root, and PostgreSQL refuses root: need the postgres OS user (apt-get install postgresql creates it): %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startPostgres starts a server; the caller must call Stop.
func startPostgres() (*pgServer, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ldapbench-pg-")
	if err != nil {
		return nil, fmt.Errorf("benchmarks: postgres: %w", err)
	}
	s := &pgServer{Dir: dir, log: &pgLog{}, done: make(chan struct{})}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("benchmarks: postgres: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", superuser, "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("benchmarks: postgres: initdb: %w\n%s", err, out)
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
		s.done = make(chan struct{})
	}
}

var errAddrInUse = errors.New("benchmarks: postgres: port in use")

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("benchmarks: postgres: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

const startTimeout = 30 * time.Second

func (s *pgServer) launch(bin, data string, cred *syscall.Credential) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = port
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", s.Dir,
		"-c", "max_connections=100") // durability at PostgreSQL's defaults, as a deployment runs it
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// SIGKILL the server when ldapbench dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	done := s.done
	go func() {
		// The parent-death signal fires when the starting thread ends: keep
		// this goroutine on its thread until the server has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		close(done)
		return fmt.Errorf("benchmarks: postgres: starting postgres: %w", err)
	}
	s.cmd = cmd

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			if strings.Contains(s.log.String(), "already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("benchmarks: postgres: postgres exited at start:\n%s", s.log.String())
		default:
		}
		if s.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("benchmarks: postgres: postgres did not answer within %v:\n%s", startTimeout, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *pgServer) ready() bool {
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return false
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return db.PingContext(ctx) == nil
}

// DSN returns the URL of the database on the server.
func (s *pgServer) DSN(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.Port, database)
}

// newDatabase creates an empty database and returns its URL.
func (s *pgServer) newDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("bench_%d", s.dbs.Add(1))
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("benchmarks: create database: %w", err)
	}
	return s.DSN(name), nil
}

// Stop stops the server (a fast shutdown, then SIGKILL after ten seconds)
// and removes Dir. It may be called more than once.
func (s *pgServer) Stop() {
	s.once.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		os.RemoveAll(s.Dir)
	})
}

// pgLog is a bytes.Buffer safe for the server's output and the test.
type pgLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *pgLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *pgLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
