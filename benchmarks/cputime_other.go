//go:build !unix

package benchmarks

import "time"

// cpuTime is not measured here: the CPU column reads 0.
func cpuTime() time.Duration { return 0 }

// rusageMaxRSS is not measured here: the peak RSS column reads 0.
func rusageMaxRSS() int64 { return 0 }
