package benchmarks

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// The peak resident set of a child run is read from /proc, not from
// getrusage. Go starts a child with clone(CLONE_VFORK|CLONE_VM), so the
// child runs in its parent's address space until it calls exec, and at
// exec Linux folds the high-water RSS of the address space it leaves (the
// parent's) into the child's signal->maxrss. getrusage's ru_maxrss is the
// larger of that and the child's own high-water mark, so every child
// reported at least the runner's peak (225 MiB for a paged search at a
// million users, whose heap stays near 11 MiB), and clear_refs, which
// resets only the process's own mark, cannot clear it. VmHWM in
// /proc/self/status is the process's own high-water mark alone.

// resetPeakRSS makes the current resident set this process's peak, so
// that maxRSS reports the peak of what runs afterwards.
func resetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting the peak resident set: %w", err)
	}
	return nil
}

// maxRSS returns the peak resident set size of this process since it
// started or since resetPeakRSS, in bytes: VmHWM of /proc/self/status.
func maxRSS() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading the peak resident set: %w", err)
	}
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		kb, ok := bytes.CutSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(kb)), 10, 64)
		if !ok || err != nil {
			return 0, fmt.Errorf("reading the peak resident set: /proc/self/status has %q", bytes.TrimSpace(line))
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("reading the peak resident set: no VmHWM in /proc/self/status")
}
