//go:build !linux

package slapdtest

import (
	"os"
	"syscall"
)

// sysProcAttr has no parent-death signal outside Linux: use Run in TestMain
// so that servers are stopped when the tests end.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// sigTerm is os.Interrupt where SIGTERM does not exist (Windows has no
// slapd to start anyway).
var sigTerm os.Signal = os.Interrupt
