package ldapauth

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of an [Authenticator]'s pools (users', and the
// service account's), servers and logins (docs/observability.md).
type Stats struct {
	Users   PoolStats         `json:"users"`
	Service PoolStats         `json:"service"`
	Servers []ServerStats     `json:"servers"`
	Logins  map[string]uint64 `json:"logins"` // by ldapauth.login.outcome (docs/observability.md)
}

// PoolStats describes one connection pool; the counters count from New.
type PoolStats struct {
	MaxIdle      int    `json:"max_idle"` // LDAP_AUTH_POOL_SIZE
	Open         int    `json:"open"`     // Idle + InUse
	Idle         int    `json:"idle"`
	InUse        int    `json:"in_use"`
	Dials        uint64 `json:"dials"`
	DialFailures uint64 `json:"dial_failures"`
	StaleClosed  uint64 `json:"stale_closed"` // idle ones closed instead of used
	Retries      uint64 `json:"retries"`      // by the retry rule
}

// ServerStats is one server's state: Up, or down after Failures in a row
// until DownUntil; the class and time of its last failure, kept.
type ServerStats struct {
	URL         string    `json:"url"`
	Up          bool      `json:"up"`
	Failures    int       `json:"failures"`
	DownUntil   time.Time `json:"down_until,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Stats returns a snapshot of the pools, servers and logins, cheap enough
// for every scrape; the numbers are not read at one instant.
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
