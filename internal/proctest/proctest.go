// Package proctest runs the server processes of this repository's test
// helpers (slapdtest, dstest, sambatest, pgtest): started in the
// foreground, killed with the test binary, stopped with a signal and then
// SIGKILL, polled until ready, and registered so that TestMain can stop
// those a test left running.
package proctest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options changes how Start runs a process.
type Options struct {
	// Group runs the process in a process group of its own, and Stop
	// signals the whole group and waits until every member is gone (for a
	// server that forks, such as samba).
	Group bool
	// Credential, when set, runs the process as another user.
	Credential *syscall.Credential
	// Signal is what Stop sends first; SIGTERM when nil.
	Signal os.Signal
}

// Process is one run of a server.
type Process struct {
	cmd   *exec.Cmd
	opts  Options
	done  chan struct{} // closed when the process has exited
	err   error         // from Wait, valid after done
	pgid  int
	group bool
}

// Start starts cmd. Where the platform has one (Linux), the kernel SIGKILLs
// the process if the test binary dies without stopping it (a panic, a
// timeout, os.Exit in TestMain); since that parent-death signal fires when
// the thread that started the child ends, the starting goroutine keeps its
// thread until the process exits.
func Start(cmd *exec.Cmd, opts Options) (*Process, error) {
	cmd.SysProcAttr = sysProcAttr(opts)
	p := &Process{cmd: cmd, opts: opts, done: make(chan struct{}), group: opts.Group && groupsSupported}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	p.pgid = cmd.Process.Pid
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, valid once Done is closed.
func (p *Process) Err() error { return p.err }

// ErrExited and ErrTimeout are Ready's failures.
var (
	ErrExited  = errors.New("exited at start")
	ErrTimeout = errors.New("not ready in time")
)

// Ready calls ready every interval until it returns nil. It returns an
// error matching ErrExited (with the exit status) when the process exits
// first, ErrTimeout (with ready's last error) after timeout, or ctx's
// error. It stops nothing: on an error the caller stops the process.
func (p *Process) Ready(ctx context.Context, timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w (%v)", ErrExited, p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (%v): %v", ErrTimeout, timeout, err)
		}
		time.Sleep(interval)
	}
}

// Stop sends the stop signal, then SIGKILL after grace, and waits for the
// process to exit (with Group, for every process of its group to be gone).
// A nil p is stopped already.
func (p *Process) Stop(grace time.Duration) {
	if p == nil {
		return
	}
	sig := p.opts.Signal
	if sig == nil {
		sig = sigTerm
	}
	if p.group {
		p.stopGroup(sig, grace)
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Registry is the set of servers a helper started and has not stopped, for
// its Run (TestMain) to stop those a test left running.
type Registry[T comparable] struct {
	mu      sync.Mutex
	servers map[T]struct{}
}

// Add registers s.
func (r *Registry[T]) Add(s T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.servers == nil {
		r.servers = make(map[T]struct{})
	}
	r.servers[s] = struct{}{}
}

// Remove forgets s.
func (r *Registry[T]) Remove(s T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.servers, s)
}

// All returns the servers registered.
func (r *Registry[T]) All() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]T, 0, len(r.servers))
	for s := range r.servers {
		out = append(out, s)
	}
	return out
}

// FreePort returns a loopback TCP port free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LastLines returns the last n lines of s, for error messages.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TailBuffer keeps the last Max bytes written to it (256 KiB when Max is
// zero); it is safe for concurrent use, as a process's stdout and stderr.
type TailBuffer struct {
	Max int
	mu  sync.Mutex
	buf []byte
}

func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	limit := b.Max
	if limit == 0 {
		limit = 256 * 1024
	}
	if over := len(b.buf) - limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// WriteString writes s.
func (b *TailBuffer) WriteString(s string) { _, _ = b.Write([]byte(s)) }

func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Slot holds the current run of a helper's server, across restarts, and
// whether the server was stopped for good. It is safe for concurrent use.
type Slot struct {
	mu      sync.Mutex
	proc    *Process
	stopped bool
}

// Set makes p the current run.
func (s *Slot) Set(p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc = p
}

// StopRun stops the current run for a restart, waiting up to grace before
// SIGKILL. It returns ErrStopped after Stop.
func (s *Slot) StopRun(grace time.Duration) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	p.Stop(grace)
	return nil
}

// ErrStopped is a restart after Stop.
var ErrStopped = errors.New("restart after Stop")

// Stop stops the current run for good and reports whether this was the
// first Stop (the caller then cleans up once).
func (s *Slot) Stop(grace time.Duration) (first bool) {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	first = !s.stopped
	s.stopped = true
	s.mu.Unlock()
	p.Stop(grace)
	return first
}
