package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrLeaseHeld means another sync holds the lease: matched with errors.Is
// on the [*LeaseHeldError] of AcquireSyncLease.
var ErrLeaseHeld = errors.New("sqlstore: another sync holds the lease")

// ErrLeaseLost is the cause of a lease's context ending because the lease
// could not be kept (context.Cause).
var ErrLeaseLost = errors.New("sqlstore: the sync lease was lost")

// LeaseHeldError is AcquireSyncLease's refusal: another sync holds the
// lease.
type LeaseHeldError struct {
	// Holder names the holder (host, process ID), as it recorded itself.
	Holder string
	// Since is when the holder took the lease; zero if it has not said yet.
	Since time.Time
}

func (e *LeaseHeldError) Error() string {
	if e.Since.IsZero() {
		return "sqlstore: another sync holds the lease since a moment ago (its holder has not recorded itself yet)"
	}
	return fmt.Sprintf("sqlstore: another sync holds the lease since %s (%s)", e.Since.UTC().Format(time.RFC3339), e.Holder)
}

// Is makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// DefaultLeaseTTL is how long a SQLite lease lasts without renewal: a
// crashed holder's lease is taken over this long after its last renewal.
// The holder renews it every third of that.
const DefaultLeaseTTL = time.Minute

// leaseName is the row of the sync job's lease; pgLeaseKey its advisory
// lock ("ldap", "sync" in ASCII), in the two-key space, apart from the
// single-key lock of the migrations.
const leaseName = "sync"

var pgLeaseKey = [2]int32{0x6c646170, 0x73796e63}

// Lease is the sync job's lease, held until Release.
type Lease struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	once   sync.Once
	err    error
	s      *Store
	token  string
	conn   *sql.Conn // PostgreSQL: the session holding the advisory lock
}

// Context returns a context that ends, with cause [ErrLeaseLost], if the
// lease is lost (a renewal finds another holder, or the database cannot be
// reached for longer than the lease lasts), or when it is released. Run the
// sync with it.
func (l *Lease) Context() context.Context { return l.ctx }

// AcquireSyncLease takes the lease of the sync job, so that of several
// replicas scheduling the job only one runs it at a time, or returns a
// [*LeaseHeldError] (ErrLeaseHeld) at once, without waiting. The lease is
// held until Release, renewed in the background; ctx bounds the lease's
// Context.
//
// On PostgreSQL the lease is a session-level advisory lock held on a
// connection of its own: the server releases it when that connection ends,
// so a crashed holder's lease ends with its connection (ttl is not used).
// On SQLite it is a row with an expiry, renewed every ttl/3: a crashed
// holder's lease is taken over once ttl has passed since its last renewal.
// ttl <= 0 means [DefaultLeaseTTL].
func (s *Store) AcquireSyncLease(ctx context.Context, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	l := &Lease{s: s, token: rand.Text(), done: make(chan struct{})}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("host %s, pid %d", host, os.Getpid())
	var err error
	if s.dialect.numbered {
		err = s.lockPostgres(ctx, l, holder, ttl)
	} else {
		err = s.lockSQLite(ctx, l, holder, ttl)
	}
	if err != nil {
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	go l.renew(ttl)
	return l, nil
}

func (s *Store) lockSQLite(ctx context.Context, l *Lease, holder string, ttl time.Duration) error {
	return s.inTx(ctx, "acquire sync lease", func(tx *sql.Tx) error {
		var held LeaseHeldError
		var expires time.Time
		err := tx.QueryRowContext(ctx, `SELECT holder, acquired_at, expires_at FROM sync_lease WHERE name = ?`, leaseName).
			Scan(&held.Holder, &held.Since, &expires)
		now := s.now()
		switch {
		case err == nil && expires.After(now):
			return &held
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO sync_lease (name, token, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET token = excluded.token, holder = excluded.holder,
			acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
			leaseName, l.token, holder, now, now.Add(ttl))
		return err
	})
}

func (s *Store) lockPostgres(ctx context.Context, l *Lease, holder string, ttl time.Duration) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: acquire sync lease: %w", err)
	}
	var locked bool
	defer func() {
		if err == nil {
			return
		}
		if locked { // never back into the pool holding the lock: the server ends it with the session
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}()
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, $2)`, pgLeaseKey[0], pgLeaseKey[1]).Scan(&locked); err != nil {
		return fmt.Errorf("sqlstore: acquire sync lease: %w", err)
	}
	if !locked {
		held := &LeaseHeldError{}
		err := conn.QueryRowContext(ctx, `SELECT holder, acquired_at FROM sync_lease WHERE name = $1`, leaseName).Scan(&held.Holder, &held.Since)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlstore: acquire sync lease: %w", err)
		}
		return held
	}
	now := s.now()
	if _, err := conn.ExecContext(ctx, `INSERT INTO sync_lease (name, token, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name) DO UPDATE SET token = excluded.token, holder = excluded.holder,
		acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
		leaseName, l.token, holder, now, now.Add(ttl)); err != nil {
		return fmt.Errorf("sqlstore: acquire sync lease: %w", err)
	}
	l.conn = conn
	return nil
}

// renew keeps the lease until Release or the end of its context: on
// SQLite it moves the expiry; on PostgreSQL it checks that the session
// holding the lock is alive. It ends the lease's context with ErrLeaseLost
// when another holder took the row, or when it could not renew for ttl.
func (l *Lease) renew(ttl time.Duration) {
	defer close(l.done)
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-tick.C:
		}
		ours, err := l.check(ttl)
		switch {
		case err == nil && ours:
			last = time.Now()
		case err == nil, time.Since(last) >= ttl:
			l.cancel(ErrLeaseLost)
			return
		}
	}
}

// check renews or checks the lease once: ours is false when another holder
// has it.
func (l *Lease) check(ttl time.Duration) (ours bool, err error) {
	ctx, cancel := context.WithTimeout(l.ctx, ttl/3)
	defer cancel()
	if l.conn != nil {
		return true, l.conn.PingContext(ctx)
	}
	res, err := l.s.db.ExecContext(ctx, `UPDATE sync_lease SET expires_at = ? WHERE name = ? AND token = ?`,
		l.s.now().Add(ttl), leaseName, l.token)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Release gives the lease up, at once, for the next run. It is safe to
// call more than once.
func (l *Lease) Release() error {
	l.once.Do(func() {
		l.cancel(nil)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if l.conn != nil {
			_, err := l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, $2)`, pgLeaseKey[0], pgLeaseKey[1])
			if err != nil { // never back into the pool still holding the lock: the server ends it with the session
				_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			l.err = errors.Join(err, l.conn.Close())
		} else {
			_, l.err = l.s.db.ExecContext(ctx, `DELETE FROM sync_lease WHERE name = ? AND token = ?`, leaseName, l.token)
		}
		if l.err != nil {
			l.err = fmt.Errorf("sqlstore: release sync lease: %w", l.err)
		}
	})
	return l.err
}
