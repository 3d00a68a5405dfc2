package proctest

import (
	"errors"
	"os"
	"syscall"
	"time"
)

const groupsSupported = true

var sigTerm os.Signal = syscall.SIGTERM

func sysProcAttr(opts Options) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: opts.Group, Credential: opts.Credential}
}

// stopGroup signals the process group, SIGKILLs it after grace, and waits
// until the group is gone (its forked children are reparented, not reaped
// by us).
func (p *Process) stopGroup(sig os.Signal, grace time.Duration) {
	s, _ := sig.(syscall.Signal)
	_ = syscall.Kill(-p.pgid, s)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	<-p.done
	for range 100 {
		if err := syscall.Kill(-p.pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
