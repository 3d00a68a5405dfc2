package ldapauth

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of an [Authenticator]'s connections, servers and
// logins, as database/sql's DBStats is of a DB. Counters count from New.
type Stats struct {
	// Users is the pool of connections users bind on.
	Users PoolStats `json:"users"`
	// Service is the pool of connections bound as the service account
	// (LDAP_AUTH_CONNECTION_USERNAME); all zero without one.
	Service PoolStats `json:"service"`
	// Servers are the servers of LDAP_AUTH_URL, in order.
	Servers []ServerStats `json:"servers"`
	// Logins counts the logins by outcome, under the names of the
	// ldapauth.login.outcome attribute (docs/observability.md): success,
	// canceled, account_state, unknown_user, not_permitted,
	// invalid_credentials, unavailable, config_error and error, each
	// present. Each Authenticate call counts once.
	Logins map[string]uint64 `json:"logins"`
}

// PoolStats describes one connection pool.
type PoolStats struct {
	// MaxIdle is LDAP_AUTH_POOL_SIZE: the most idle connections kept.
	MaxIdle int `json:"max_idle"`
	// Open is the number of connections dialled for the pool and not yet
	// closed: Idle + InUse.
	Open int `json:"open"`
	// Idle is the number of connections waiting in the pool.
	Idle int `json:"idle"`
	// InUse is the number of connections serving a login now.
	InUse int `json:"in_use"`
	// Dials counts the connections dialled (and set up with StartTLS or
	// LDAPS) for the pool.
	Dials uint64 `json:"dials"`
	// DialFailures counts the dials for the pool that reached no server.
	DialFailures uint64 `json:"dial_failures"`
	// StaleClosed counts the idle connections closed when taken from the
	// pool instead of being used: closed by the server, idle longer than
	// LDAP_AUTH_POOL_IDLE_TIMEOUT, or to a server after one back from
	// back-off.
	StaleClosed uint64 `json:"stale_closed"`
	// Retries counts first operations run again on a new connection
	// because theirs was lost before any answer (the package's retry rule).
	Retries uint64 `json:"retries"`
}

// ServerStats is one server's state as the connection logic sees it.
type ServerStats struct {
	// URL is the server's, as in LDAP_AUTH_URL.
	URL string `json:"url"`
	// Up is false from a failure (refused, timed out, reset, busy) to the
	// server's next answer.
	Up bool `json:"up"`
	// Failures counts the failures in a row; zero when Up.
	Failures int `json:"failures"`
	// DownUntil is the end of the server's back-off: until then it is
	// tried only when every server is in back-off. Zero when Up.
	DownUntil time.Time `json:"down_until,omitzero"`
	// LastError is the class of the server's last failure (refused,
	// timeout, closed, tls, busy, unavailable, ...; the error.type of
	// docs/observability.md), empty if it never failed. LastErrorAt is
	// when. They are kept after the server is up again.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Stats returns a snapshot of the pools, the servers and the logins. It is
// cheap enough for every scrape: atomic loads, and each pool's lock held
// only to count its idle connections, never across I/O. The numbers are
// read one after another, not at one instant.
func (a *Authenticator) Stats() Stats {
	st := Stats{Users: a.users.stats(), Service: a.service.stats(), Servers: make([]ServerStats, len(a.servers))}
	now := a.now()
	for i := range a.servers {
		s := &st.Servers[i]
		s.URL = a.servers[i].url
		failures, until := a.health[i].state()
		s.Up = failures == 0
		if !s.Up {
			s.Failures = failures
			if now.Before(until) {
				s.DownUntil = until
			}
		}
		if e := a.obs.lastError(i); e != nil {
			s.LastError, s.LastErrorAt = e.class, e.at
		}
	}
	st.Logins = make(map[string]uint64, numOutcomes)
	for i, name := range outcomeNames {
		if a.obs != nil {
			st.Logins[name] = a.obs.logins[i].Load()
		} else {
			st.Logins[name] = 0
		}
	}
	return st
}

// state returns the failures in a row and the end of the back-off: the
// accessor Stats reads health through.
func (h *health) state() (failures int, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int(h.failures.Load()), h.until
}

// poolCounters are a pool's counters for Stats.
type poolCounters struct {
	open                                    atomic.Int64
	dials, dialFailures, staleClosed, retry atomic.Uint64
}

// dialed counts a dial for the pool; c, when the dial succeeded, counts as
// open until closed.
func (n *poolCounters) dialed(c *conn, err error) {
	if err != nil {
		n.dialFailures.Add(1)
		return
	}
	n.dials.Add(1)
	n.open.Add(1)
	c.openIn = n
}

// retried counts attempts after the first.
func (n *poolCounters) retried(attempt int) {
	if attempt > 0 {
		n.retry.Add(1)
	}
}

// uncount takes c out of its pool's open count, once.
func (c *conn) uncount() {
	if n := c.openIn; n != nil {
		c.openIn = nil
		n.open.Add(-1)
	}
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	idle := len(p.idle)
	p.mu.Unlock()
	s := PoolStats{
		MaxIdle: max(p.size, 0), Idle: idle, Open: int(p.n.open.Load()),
		Dials: p.n.dials.Load(), DialFailures: p.n.dialFailures.Load(),
		StaleClosed: p.n.staleClosed.Load(), Retries: p.n.retry.Load(),
	}
	// The counts are read one after another: keep them consistent.
	s.Open = max(s.Open, s.Idle)
	s.InUse = s.Open - s.Idle
	return s
}
