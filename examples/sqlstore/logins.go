package sqlstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file holds what a login server keeps beside the users, so that
// several replicas on one database share it: sessions, failed-login
// counters and the clients each user signed in from.

// ErrNoSession means the session ID is unknown or its session has expired
// or ended.
var ErrNoSession = errors.New("sqlstore: no such session")

// micros is the stored form of a time: Unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

// hashID is the stored form of a session ID.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// CreateSession starts a session for the user, who must be stored
// ([ErrNoSuchUser] otherwise), lasting ttl, and returns its ID: 32 random
// bytes, base64url. Only the ID's SHA-256 is stored. The session replaces
// ends (the one the browser held before this login; empty for none). Beyond
// maxPerUser sessions of the user (0: no cap), the oldest end.
func (s *Store) CreateSession(ctx context.Context, username string, ttl time.Duration, maxPerUser int, replaces string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("sqlstore: session ID: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	key, now := userKey(username), s.now()
	err := s.inTx(ctx, "create session", func(tx *sql.Tx) error {
		if replaces != "" {
			if _, err := s.exec(ctx, tx, `DELETE FROM login_sessions WHERE id_hash = ?`, hashID(replaces)); err != nil {
				return err
			}
		}
		ok, err := s.userExists(ctx, tx, key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoSuchUser, username)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO login_sessions (id_hash, username_key, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			hashID(id), key, micros(now), micros(now.Add(ttl))); err != nil {
			return err
		}
		if maxPerUser <= 0 {
			return nil
		}
		_, err = s.exec(ctx, tx, `DELETE FROM login_sessions WHERE username_key = ? AND id_hash NOT IN (
			SELECT id_hash FROM login_sessions WHERE username_key = ? ORDER BY created_at DESC, id_hash LIMIT ?)`,
			key, key, maxPerUser)
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// SessionUser returns the username of the session, or an error matching
// [ErrNoSession] when it does not exist or has expired.
func (s *Store) SessionUser(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", ErrNoSession
	}
	var name string
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT u.username FROM login_sessions s
		JOIN ldap_users u ON u.username_key = s.username_key
		WHERE s.id_hash = ? AND s.expires_at > ?`), hashID(id), micros(s.now())).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNoSession
	}
	if err != nil {
		return "", fmt.Errorf("sqlstore: read session: %w", err)
	}
	return name, nil
}

// DeleteSession ends the session; an unknown ID is no error.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return s.inTx(ctx, "delete session", func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `DELETE FROM login_sessions WHERE id_hash = ?`, hashID(id))
		return err
	})
}

// Sessions returns how many unexpired sessions the user has.
func (s *Store) Sessions(ctx context.Context, username string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT COUNT(*) FROM login_sessions WHERE username_key = ? AND expires_at > ?`),
		userKey(username), micros(s.now())).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: count sessions: %w", err)
	}
	return n, nil
}

// ThrottleRule is one failed-login counter checked by [Store.TakeAttempt].
// Once Limit attempts are counted, the next is refused until Backoff after
// the last one; each attempt counted beyond Limit doubles that wait, up to
// MaxBackoff. A counter with no attempt for Forget starts again from zero.
type ThrottleRule struct {
	Key        string
	Limit      int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Forget     time.Duration
}

// wait returns how long after the last attempt the next is refused, for n
// attempts counted; zero while n is below the limit.
func (r ThrottleRule) wait(n int) time.Duration {
	if n < r.Limit {
		return 0
	}
	w := r.Backoff
	for i := r.Limit; i < n && w < r.MaxBackoff; i++ {
		w *= 2
	}
	return min(w, r.MaxBackoff)
}

// TakeAttempt counts a login attempt against every rule at once, before
// the attempt is made, so that concurrent attempts (on any replica) cannot
// overshoot a limit. When a rule refuses the attempt nothing is counted:
// it returns the index of the first refusing rule and how long until every
// refusing rule would let an attempt through. Otherwise it returns -1, 0.
// Undo the count with [Store.ForgiveAttempt] when the attempt turns out not
// to be a failure.
func (s *Store) TakeAttempt(ctx context.Context, rules []ThrottleRule) (refusedBy int, retryAfter time.Duration, err error) {
	now := s.now()
	order := make([]int, len(rules)) // lock rows in key order: no deadlock between two attempts
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(rules[a].Key, rules[b].Key) })
	refusedBy = -1
	err = s.inTx(ctx, "take attempt", func(tx *sql.Tx) error {
		counts := make([]int, len(rules))
		for _, i := range order {
			r := rules[i]
			if _, err := s.exec(ctx, tx, `INSERT INTO login_throttle (throttle_key, failures, last_failure) VALUES (?, 0, 0)
				ON CONFLICT (throttle_key) DO NOTHING`, r.Key); err != nil {
				return err
			}
			var n int
			var last int64
			if err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT failures, last_failure FROM login_throttle WHERE throttle_key = ?`+s.dialect.forUpdate),
				r.Key).Scan(&n, &last); err != nil {
				return err
			}
			lastAt := time.UnixMicro(last)
			if now.Sub(lastAt) >= r.Forget {
				n = 0
			}
			counts[i] = n
			if until := lastAt.Add(r.wait(n)); n >= r.Limit && now.Before(until) {
				if refusedBy < 0 || i < refusedBy {
					refusedBy = i
				}
				retryAfter = max(retryAfter, until.Sub(now))
			}
		}
		if refusedBy >= 0 {
			return errRefused
		}
		for _, i := range order {
			if _, err := s.exec(ctx, tx, `UPDATE login_throttle SET failures = ?, last_failure = ? WHERE throttle_key = ?`,
				counts[i]+1, micros(now), rules[i].Key); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errRefused) {
		return refusedBy, retryAfter, nil
	}
	if err != nil {
		return -1, 0, err
	}
	return -1, 0, nil
}

// errRefused rolls back TakeAttempt's transaction; it never leaves it.
var errRefused = errors.New("sqlstore: attempt refused")

// ForgiveAttempt takes back one attempt counted by TakeAttempt on each key:
// the attempt was no failure (a right password on a client key, a
// directory that did not answer).
func (s *Store) ForgiveAttempt(ctx context.Context, keys ...string) error {
	return s.inTx(ctx, "forgive attempt", func(tx *sql.Tx) error {
		for _, k := range slices.Sorted(slices.Values(keys)) {
			if _, err := s.exec(ctx, tx, `UPDATE login_throttle SET failures = failures - 1 WHERE throttle_key = ? AND failures > 0`, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// ClearAttempts forgets every attempt counted on the keys: the user signed
// in, as the directory forgets its own failure count on a successful bind.
func (s *Store) ClearAttempts(ctx context.Context, keys ...string) error {
	return s.inTx(ctx, "clear attempts", func(tx *sql.Tx) error {
		for _, k := range slices.Sorted(slices.Values(keys)) {
			if _, err := s.exec(ctx, tx, `DELETE FROM login_throttle WHERE throttle_key = ?`, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Attempts returns the attempts counted on key, as TakeAttempt sees them
// now with the rule's forget time.
func (s *Store) Attempts(ctx context.Context, key string, forget time.Duration) (int, error) {
	var n int
	var last int64
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT failures, last_failure FROM login_throttle WHERE throttle_key = ?`), key).Scan(&n, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: read attempts: %w", err)
	}
	if s.now().Sub(time.UnixMicro(last)) >= forget {
		return 0, nil
	}
	return n, nil
}

// RememberClient records that the user signed in from client (an address).
func (s *Store) RememberClient(ctx context.Context, username, client string) error {
	return s.inTx(ctx, "remember client", func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO login_known_clients (username_key, client, last_login) VALUES (?, ?, ?)
			ON CONFLICT (username_key, client) DO UPDATE SET last_login = excluded.last_login`,
			userKey(username), client, micros(s.now()))
		return err
	})
}

// KnownClient reports whether the user signed in from client within the
// last period.
func (s *Store) KnownClient(ctx context.Context, username, client string, within time.Duration) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, s.dialect.rebind(`SELECT 1 FROM login_known_clients WHERE username_key = ? AND client = ? AND last_login > ?`),
		userKey(username), client, micros(s.now().Add(-within))).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: read known client: %w", err)
	}
	return true, nil
}

// Sweep deletes expired sessions, failed-login counters without an attempt
// for counterAge, and known clients not seen for clientAge. It returns how
// many rows it deleted. Run it periodically (the login server: every few
// minutes), never per login.
func (s *Store) Sweep(ctx context.Context, counterAge, clientAge time.Duration) (int64, error) {
	now := s.now()
	var total int64
	err := s.inTx(ctx, "sweep", func(tx *sql.Tx) error {
		for _, q := range []struct {
			query string
			arg   int64
		}{
			{`DELETE FROM login_sessions WHERE expires_at <= ?`, micros(now)},
			{`DELETE FROM login_throttle WHERE last_failure < ?`, micros(now.Add(-counterAge))},
			{`DELETE FROM login_known_clients WHERE last_login < ?`, micros(now.Add(-clientAge))},
		} {
			res, err := s.exec(ctx, tx, q.query, q.arg)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += n
		}
		return nil
	})
	return total, err
}
