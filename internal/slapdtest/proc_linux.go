package slapdtest

import (
	"os"
	"syscall"
)

// sysProcAttr makes the kernel SIGKILL slapd when the test binary dies
// without stopping it (a panic, a timeout, os.Exit in TestMain).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

var sigTerm os.Signal = syscall.SIGTERM
