package sqlstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
)

// leaseHolderEnv names, in a re-executed test binary, the database whose
// sync lease it takes (holdLease).
const leaseHolderEnv = "SQLSTORE_TEST_LEASE_HOLDER_DSN"

// holdLease is the other process: it takes the lease, says "held", holds
// it until its stdin closes, then releases it and says "released".
func holdLease(dsn string) int {
	ctx := context.Background()
	s, err := sqlstore.OpenDSN(ctx, dsn)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer s.Close()
	l, err := s.AcquireSyncLease(ctx, 0)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("held")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := l.Release(); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("released")
	return 0
}

// holder is a running holdLease process.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startHolder(t *testing.T, dsn string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), leaseHolderEnv+"="+dsn)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	h := &holder{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	require.Equal(t, "held", h.line(t), "the other process took the lease")
	return h
}

func (h *holder) line(t *testing.T) string {
	t.Helper()
	require.True(t, h.out.Scan(), "the other process ended: %v", h.out.Err())
	return h.out.Text()
}

// TestSyncLeaseTwoProcesses: while another process holds the sync lease, a
// second acquire is refused at once, naming the holder and since when;
// released, it is taken; held by a process that crashes, it is taken once
// the lease expires (SQLite: its expiry passed; PostgreSQL: at once, the
// server ending the crashed session's lock).
func TestSyncLeaseTwoProcesses(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			driver, dsn := b.newDB(t)
			s := open(t, driver, dsn) // creates the schema before the other process opens it
			start := time.Now()
			h := startHolder(t, dsn)

			_, err := s.AcquireSyncLease(ctx, 0)
			require.ErrorIs(t, err, sqlstore.ErrLeaseHeld)
			var held *sqlstore.LeaseHeldError
			require.ErrorAs(t, err, &held)
			assert.Contains(t, held.Holder, "pid "+strconv.Itoa(h.cmd.Process.Pid))
			assert.WithinRange(t, held.Since, start.Add(-time.Second), time.Now().Add(time.Second))
			assert.True(t, strings.HasPrefix(err.Error(), "sqlstore: another sync holds the lease since "+held.Since.UTC().Format(time.RFC3339)), err.Error())

			require.NoError(t, h.stdin.Close())
			require.Equal(t, "released", h.line(t))
			require.NoError(t, h.cmd.Wait())
			l, err := s.AcquireSyncLease(ctx, 0)
			require.NoError(t, err, "released, the lease is free")
			require.NoError(t, l.Release())
			require.NoError(t, l.Release(), "twice")

			crashed := startHolder(t, dsn)
			require.NoError(t, crashed.cmd.Process.Kill())
			_ = crashed.cmd.Wait()
			if driver == sqlstore.DriverPostgres {
				// The server ends the lock with the session, once it sees the
				// connection closed.
				deadline := time.Now().Add(30 * time.Second)
				for {
					l, err = s.AcquireSyncLease(ctx, 0)
					if !errors.Is(err, sqlstore.ErrLeaseHeld) || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				require.NoError(t, err, "the crashed holder's lock ended with its session")
				require.NoError(t, l.Release())
				return
			}
			_, err = s.AcquireSyncLease(ctx, 0)
			require.ErrorIs(t, err, sqlstore.ErrLeaseHeld, "the crashed holder's lease lasts until it expires")
			later := open(t, driver, dsn)
			later.SetClock(func() time.Time { return time.Now().Add(sqlstore.DefaultLeaseTTL + time.Second) })
			l, err = later.AcquireSyncLease(ctx, 0)
			require.NoError(t, err, "an expired lease is taken over")
			require.NoError(t, l.Release())
		})
	}
}

// TestSyncLeaseLost: on SQLite, a holder whose expired lease another run
// took over sees its lease's context end with ErrLeaseLost at its next
// renewal, and its Release leaves the new holder's lease alone.
func TestSyncLeaseLost(t *testing.T) {
	ctx := t.Context()
	driver, dsn := backends[0].newDB(t)
	first := open(t, driver, dsn)
	l, err := first.AcquireSyncLease(ctx, 300*time.Millisecond)
	require.NoError(t, err)
	require.NoError(t, l.Context().Err(), "held")

	later := open(t, driver, dsn)
	later.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	taken, err := later.AcquireSyncLease(ctx, time.Hour)
	require.NoError(t, err, "the lease expired as seen from an hour later")

	select {
	case <-l.Context().Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the first holder never noticed it lost the lease")
	}
	assert.ErrorIs(t, context.Cause(l.Context()), sqlstore.ErrLeaseLost)
	require.NoError(t, l.Release())
	_, err = first.AcquireSyncLease(ctx, 0)
	require.ErrorIs(t, err, sqlstore.ErrLeaseHeld, "the old holder's release left the new lease alone")
	require.NoError(t, taken.Release())
}
