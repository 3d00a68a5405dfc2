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
// login pays for finding out whether a server is back: each is probed when
// its back-off is over (a connect, TLS where configured, and a read of the
// root DSE), and is up again at its first answer.
//
// Its goroutine runs only while a server is down: the first failure starts
// it, it ends when every server is up again, and Close stops it (and the
// probes in flight) and waits for it. It probes the servers that are due
// at the same time, one probe per server at most, each bounded by the
// connect and receive timeouts.
type prober struct {
	mu      sync.Mutex
	running bool
	closed  bool
	wake    chan struct{} // a server went down; buffered
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	round   sync.Mutex // one round at a time: the goroutine's, or a test's
	minWait time.Duration
	// manual: no goroutine; a test runs the rounds (with a test clock,
	// which only the test moves).
	manual bool
}

func (p *prober) init() {
	p.wake = make(chan struct{}, 1)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.minWait = 50 * time.Millisecond
}

// wakeProber starts the prober if it is not running, or tells it a server
// went down. Called by health.down.
func (a *Authenticator) wakeProber() {
	p := &a.probe
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed || p.manual:
	case !p.running:
		p.running = true
		p.wg.Add(1)
		go a.runProber()
	default:
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// stopProber stops the prober and waits for its goroutines; no probe runs
// after it returns.
func (a *Authenticator) stopProber() {
	p := &a.probe
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

func (a *Authenticator) runProber() {
	p := &a.probe
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for p.ctx.Err() == nil {
		next, down := a.probeRound()
		if !down {
			p.mu.Lock()
			if !a.anyDown() {
				p.running = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			continue
		}
		// The clock may be a test's: wait on real time for what it says,
		// at least minWait, and look again.
		timer.Reset(max(next.Sub(a.now()), p.minWait))
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// anyDown reports whether a server is marked down.
func (a *Authenticator) anyDown() bool {
	for i := range a.health {
		if !a.health[i].isUp() {
			return true
		}
	}
	return false
}

// probeRound probes every server that is due, at the same time, and
// returns when all those probes have ended: the earliest time a server
// still down is due, and whether any is.
func (a *Authenticator) probeRound() (next time.Time, down bool) {
	p := &a.probe
	p.round.Lock()
	defer p.round.Unlock()
	if p.ctx.Err() != nil {
		return time.Time{}, false
	}
	now := a.now()
	var wg sync.WaitGroup
	for i := range a.servers {
		if a.health[i].due(now) {
			wg.Go(func() { a.probeServer(p.ctx, i) })
		}
	}
	wg.Wait()
	for i := range a.health {
		h := &a.health[i]
		h.mu.Lock()
		if h.failures.Load() > 0 && (!down || h.until.Before(next)) {
			next, down = h.until, true
		}
		h.mu.Unlock()
	}
	return next, down
}

// rootDSE is the probe's request: the server's root entry, no attributes.
var rootDSE = ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
	"(objectClass=*)", []string{"1.1"}, nil)

// probeServer connects to server i as a login would and reads the root
// DSE. Any answer marks the server up, a refusal too (Active Directory and
// GLAuth refuse an anonymous read, insufficientAccessRights); busy,
// unavailable or a failure marks it down again, doubling its back-off. A
// probe cut short by Close leaves the state alone.
func (a *Authenticator) probeServer(ctx context.Context, i int) {
	s := a.servers[i]
	before := a.health[i].failures.Load()
	c, err := a.dialServer(ctx, s)
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
	if err == nil || errors.As(err, &ldapErr) && !isNetworkError(err) && ldapErr.ResultCode != ldap.ErrorUnexpectedResponse {
		a.health[i].up()
		a.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "ldapauth: server back up", slog.String("url", s.url))
		return
	}
	if a.health[i].failures.Load() == before {
		a.health[i].down(a.now()) // unless do did
	}
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: server still down", slog.String("url", s.url), slog.String("error", err.Error()))
}
