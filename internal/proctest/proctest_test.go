package proctest

import (
	"context"
	"errors"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStopTerminates(t *testing.T) {
	p, err := Start(exec.Command("sleep", "60"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(5 * time.Second)
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	if p.Err() == nil {
		t.Fatal("a process stopped by a signal has an exit error")
	}
	var nilProcess *Process
	nilProcess.Stop(time.Second) // stopped already
}

// A process that ignores the stop signal is killed after the grace.
func TestStopKillsAfterGrace(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", `trap "" TERM; while :; do sleep 1; done`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the shell has set its trap: its first sleep has started.
	_ = p.Ready(context.Background(), 5*time.Second, 10*time.Millisecond, func() error {
		if out, _ := exec.Command("pgrep", "-P", strconv.Itoa(p.cmd.Process.Pid)).Output(); len(out) == 0 {
			return errors.New("no child yet")
		}
		return nil
	})
	p.Stop(100 * time.Millisecond)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("want killed by SIGKILL, got %v", p.cmd.ProcessState)
	}
}

func TestReady(t *testing.T) {
	t.Run("exited", func(t *testing.T) {
		p, err := Start(exec.Command("false"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Ready(context.Background(), 5*time.Second, 10*time.Millisecond, func() error { return errors.New("not yet") })
		if !errors.Is(err, ErrExited) {
			t.Fatalf("want ErrExited, got %v", err)
		}
	})
	t.Run("timeout, with the last check's error", func(t *testing.T) {
		p, err := Start(exec.Command("sleep", "60"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(5 * time.Second)
		err = p.Ready(context.Background(), 50*time.Millisecond, 10*time.Millisecond, func() error { return errors.New("no answer") })
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no answer") {
			t.Fatalf("want ErrTimeout naming the check's error, got %v", err)
		}
	})
	t.Run("ready", func(t *testing.T) {
		p, err := Start(exec.Command("sleep", "60"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(5 * time.Second)
		calls := 0
		err = p.Ready(context.Background(), 5*time.Second, time.Millisecond, func() error {
			if calls++; calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("err %v after %d checks", err, calls)
		}
	})
}

// With Group, Stop leaves no forked child behind.
func TestStopGroup(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process groups are stopped this way on Linux only")
	}
	p, err := Start(exec.Command("sh", "-c", "sleep 60 & sleep 60 & wait"), Options{Group: true})
	if err != nil {
		t.Fatal(err)
	}
	pgid := p.cmd.Process.Pid
	err = p.Ready(context.Background(), 5*time.Second, 10*time.Millisecond, func() error {
		out, _ := exec.Command("pgrep", "-g", strconv.Itoa(pgid)).Output()
		if n := len(strings.Fields(string(out))); n < 3 {
			return errors.New("children not started yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(5 * time.Second)
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the group is still there: %v", err)
	}
}

func TestRegistry(t *testing.T) {
	var r Registry[*int]
	a, b := new(int), new(int)
	r.Add(a)
	r.Add(b)
	r.Remove(a)
	if got := r.All(); len(got) != 1 || got[0] != b {
		t.Fatalf("got %v", got)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &TailBuffer{Max: 4}
	b.WriteString("abc")
	b.WriteString("def")
	if got := b.String(); got != "cdef" {
		t.Fatalf("got %q", got)
	}
	if got := LastLines("a\nb\nc\n", 2); got != "b\nc" {
		t.Fatalf("got %q", got)
	}
}

func TestSlot(t *testing.T) {
	var s Slot
	p, err := Start(exec.Command("sleep", "60"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Set(p)
	if err := s.StopRun(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-p.Done() // StopRun waited for the run to end
	if !s.Stop(time.Second) || s.Stop(time.Second) {
		t.Fatal("Stop reports true the first time only")
	}
	if err := s.StopRun(time.Second); !errors.Is(err, ErrStopped) {
		t.Fatalf("a restart after Stop: got %v", err)
	}
}
