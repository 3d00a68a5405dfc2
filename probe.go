package ldapauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// prober checks the servers marked down in the background, so that no
// login pays for finding out whether a server is back: a server whose
// back-off is over is probed (a connect, TLS where configured, and a read
// of the root DSE) and is up again at its first answer.
//
// It has no goroutine of its own: a login that finds a server due starts
// its probe in a goroutine and goes on with the servers that are up. At
// most one probe per server runs at a time, each bounded by the connect
// and receive timeouts; Close aborts those in flight and waits for them.
type prober struct {
	mu     sync.Mutex
	closed bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// manual: logins start no probe; a test runs them (with a test clock,
	// which only the test moves).
	manual bool
}

func (p *prober) init() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
}

// probeDue starts a background probe of each server that is down, whose
// back-off is over, and that no probe is checking yet. It never waits.
func (a *Authenticator) probeDue() {
	if a.probe.manual {
		return
	}
	a.startProbes(nil)
}

// startProbes starts the probes of probeDue, adding each to wg when not
// nil.
func (a *Authenticator) startProbes(wg *sync.WaitGroup) {
	p := &a.probe
	var now time.Time
	for i := range a.health {
		h := &a.health[i]
		if h.isUp() {
			continue // the fast path: one atomic load per server
		}
		if now.IsZero() {
			now = a.now()
		}
		if !h.due(now) || !h.probing.CompareAndSwap(false, true) {
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			h.probing.Store(false)
			return
		}
		p.wg.Add(1)
		p.mu.Unlock()
		if wg != nil {
			wg.Add(1)
		}
		go func() {
			defer p.wg.Done()
			if wg != nil {
				defer wg.Done()
			}
			defer h.probing.Store(false)
			a.probeServer(p.ctx, i)
		}()
	}
}

// goBackground runs f in a goroutine that Close waits for (and whose
// context, p.ctx, Close cancels), and reports whether it did: not once
// Close has begun.
func (p *prober) goBackground(f func()) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// stopProbes aborts the probes in flight and waits for them; no probe
// starts after it.
func (a *Authenticator) stopProbes() {
	p := &a.probe
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// probeRound probes every server that is due at once, and returns when
// those probes have ended (tests).
func (a *Authenticator) probeRound() {
	var wg sync.WaitGroup
	a.startProbes(&wg)
	wg.Wait()
}

// rootDSE is the probe's request: the server's root entry, no attributes.
var rootDSE = ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
	"(objectClass=*)", []string{"1.1"}, nil)

// probeServer connects to server i as a login would and reads the root
// DSE. Any answer marks the server up, a refusal too (Active Directory and
// GLAuth refuse an anonymous read, insufficientAccessRights); busy,
// unavailable, a TLS failure (a StartTLS refused included) or any other
// failure marks it down again, doubling its back-off. A
// probe cut short by Close leaves the state alone.
func (a *Authenticator) probeServer(ctx context.Context, i int) {
	s := a.servers[i]
	before := a.health[i].failures.Load()
	c, err := a.dialServer(ctx, s, i)
	if err == nil {
		c.server, c.health, c.now = i, &a.health[i], a.now
		err = c.do(ctx, func() error {
			_, err := c.l.Search(rootDSE)
			return err
		})
		c.close()
	}
	if ctx.Err() != nil {
		return
	}
	var ldapErr *ldap.Error
	if err == nil || errors.As(err, &ldapErr) && !isNetworkError(err) && !isTLSError(err) && ldapErr.ResultCode != ldap.ErrorUnexpectedResponse {
		a.health[i].up()
		a.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "ldapauth: server back up", slog.String("url", s.url))
		return
	}
	if a.health[i].failures.Load() == before {
		a.health[i].down(a.now()) // unless do did
	}
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: server still down", slog.String("url", s.url), slog.String("error", err.Error()))
}
