//go:build !linux

package benchmarks

// resetPeakRSS cannot reset the peak here: the peak RSS a child reports
// includes its setup (for the MemStore cases, a sync that fills the
// store).
func resetPeakRSS() error { return nil }

// maxRSS returns getrusage's maximum resident set size, in bytes: the only
// peak these systems report. Linux reads its own (peakrss_linux.go).
func maxRSS() (int64, error) { return rusageMaxRSS(), nil }
