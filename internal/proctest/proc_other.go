//go:build !linux

package proctest

import (
	"os"
	"syscall"
	"time"
)

const groupsSupported = false

// sigTerm is os.Interrupt where SIGTERM does not exist.
var sigTerm os.Signal = os.Interrupt

// sysProcAttr has no parent-death signal outside Linux: use the helpers'
// Run in TestMain so that servers are stopped when the tests end.
func sysProcAttr(Options) *syscall.SysProcAttr { return nil }

func (p *Process) stopGroup(os.Signal, time.Duration) {}
