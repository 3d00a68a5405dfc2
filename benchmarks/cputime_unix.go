//go:build unix

package benchmarks

import (
	"runtime"
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) this process has used:
// the client's work, which other load on the machine does not inflate as
// it does wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rusageMaxRSS returns getrusage's maximum resident set size of this
// process, in bytes (the kernel reports KiB, macOS bytes). On Linux it is
// not this process's own peak (see maxRSS in peakrss_linux.go).
func rusageMaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) * 1024
}
