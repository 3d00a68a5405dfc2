// Package benchmarks measures ldapauth's logins against the protocol floor
// and the Go peers, on the same servers in one run.
//
// It is a module of its own (github.com/go-ldapauth/ldapauth/benchmarks,
// with a replace to the repository root), so that ldapauth's go.mod never
// takes the peers' dependencies. Being below the root module's path, it may
// import the root module's internal packages: it starts a real OpenLDAP
// with internal/slapdtest, the helper ldapauth's own tests use, rather than
// a copy of it (the same rule lets golang.org/x/tools/gopls use
// golang.org/x/tools/internal).
//
// The pieces:
//
//   - A [Target] is one server in one transport (plain, StartTLS, LDAPS):
//     the in-process test directory (ldaptest, run in a child process so
//     that its allocations are not counted as the client's) and a real
//     slapd when one is installed ([StartServers]).
//   - A [Contender] is one way to log a user in: ldapauth, the raw go-ldap
//     floor, and the peer libraries ([Contenders]). Each is first checked
//     for correctness ([Check]).
//   - [Measure] runs the contenders in interleaved rounds, so that machine
//     drift falls on all of them alike, and [Table] prints logins per
//     second, p50 and p99 latency, allocations and bytes per login, each
//     with its ratio to the floor.
//   - The sync at scale: [StartScaleTarget] starts a server with generated
//     users, [SyncScale] runs ldapauth's Sync (steady and first run) and
//     the raw [PagedSearch] of the same entries, and [MeasureSyncScale]
//     interleaves them and reports wall time, client CPU, peak heap and
//     allocations, each with its ratio to the paged search.
//
// The Go benchmark functions in this package (BenchmarkLogin;
// BenchmarkPagedSearch, BenchmarkSync and BenchmarkFirstSync) give the same
// measurements to go test -bench and benchstat; cmd/ldapbench prints the
// interleaved tables (-scale for the sync). See README.md for the figures and how to reproduce them.
package benchmarks
