package benchmarks

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestChildPeakRSSIsItsOwn: a child run reports its own peak resident set,
// not its parent's. The runner here first makes itself 256 MiB bigger;
// Linux hands the parent's peak to a child started with vfork (as os/exec
// starts one) through getrusage's ru_maxrss, so the paged search of 1,000
// users, which needs a few MiB, reported more than 256 MiB before the
// peak was read from VmHWM.
func TestChildPeakRSSIsItsOwn(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("on %s the peak RSS is getrusage's, which cannot be reset (peakrss_other.go)", runtime.GOOS)
	}
	const users, grow = 1000, 256 << 20
	target := startSlapdTarget(t, users)

	ballast := make([]byte, grow)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1 // resident: a page counts once written
	}
	parent, err := maxRSS()
	require.NoError(t, err)
	require.GreaterOrEqual(t, parent, int64(grow), "the runner's own peak holds the ballast")

	spec := childSpec{URL: target.URL, SearchBase: target.SearchBase, ObjectClass: target.ObjectClass,
		ServiceDN: target.ServiceDN, ServicePassword: target.ServicePassword, SyncedGroups: target.syncedGroups,
		Users: users, Case: PagedSearchCase, Store: StoreMem}
	res, err := runInChild(t.Context(), spec)
	runtime.KeepAlive(ballast)
	require.NoError(t, err)
	assert.Less(t, res.MaxRSS, int64(grow/2), "the child's peak RSS (%s) is its own, not the runner's (%s)",
		mib(uint64(res.MaxRSS)), mib(uint64(parent)))
	assert.GreaterOrEqual(t, res.Entries, users)
	t.Logf("child %s parent %s", mib(uint64(res.MaxRSS)), mib(uint64(parent)))
}
