//go:build race

package sqlstore_test

// raceEnabled: the race detector slows SQLite about tenfold, so the stress
// test runs fewer rounds under it.
const raceEnabled = true
