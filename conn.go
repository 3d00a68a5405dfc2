package ldapauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// conn is one LDAP connection used by one call at a time. Every operation
// takes the caller's ctx: cancelling it expires the socket, which aborts the
// operation in flight and marks the connection broken.
type conn struct {
	l      *ldap.Conn
	raw    net.Conn // what deadlines are set on: the TLS or the TCP connection
	wire   *wireConn
	url    string
	server int     // index into Authenticator.servers
	health *health // the server's back-off state
	now    func() time.Time

	// broken: a network or protocol error, or a cancelled operation; the
	// connection is closed rather than pooled.
	broken bool
	// lost: the last operation failed because the connection closed or was
	// reset before a single byte of its answer arrived.
	lost bool
	// reused: taken from the pool rather than dialled for this call.
	reused    bool
	idleSince time.Time
	// receiveTimeout bounds each operation (see do).
	receiveTimeout time.Duration
	// as is the identity of the last successful bind, which errors name.
	as identity
	// obs times the operations; openIn is the pool counting c as open.
	obs    *telemetry
	openIn *poolCounters
}

// identity is who a connection is bound as.
type identity struct {
	name string // the bind name
	// variable names the setting of a service or sync account
	// (envConnectionUsername, envSyncUsername); empty for the user logging
	// in.
	variable string
}

// server is a parsed LDAP_AUTH_URL entry.
type server struct {
	url     string
	address string // host:port
	host    string
	ldaps   bool
}

// parseServer parses one LDAP_AUTH_URL entry: ldap:// or ldaps://, a host,
// and a port (389 or 636 when none is given). User info, a path (an LDAP
// URL's base DN), a query or a fragment are refused: ldapauth would ignore
// them, and user info is a password in the wrong place. Errors never show
// the user info.
func parseServer(raw string) (server, error) {
	shown := withoutUserInfo(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return server{}, fmt.Errorf("%q is not a URL", shown)
	}
	s := server{url: raw, host: u.Hostname()}
	switch strings.ToLower(u.Scheme) {
	case "ldap":
	case "ldaps":
		s.ldaps = true
	default:
		return server{}, fmt.Errorf("%q: the scheme must be ldap:// or ldaps://", shown)
	}
	switch {
	case u.User != nil:
		return server{}, fmt.Errorf("%q holds user info: set the service account in LDAP_AUTH_CONNECTION_USERNAME and LDAP_AUTH_CONNECTION_PASSWORD instead", shown)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return server{}, fmt.Errorf("%q has a path, query or fragment, which ldapauth would ignore: give scheme://host:port only (the search base is LDAP_AUTH_SEARCH_BASE)", shown)
	}
	if s.host == "" {
		return server{}, fmt.Errorf("%q has no host", shown)
	}
	port := u.Port()
	switch {
	case port == "" && s.ldaps:
		port = "636"
	case port == "":
		port = "389"
	default:
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return server{}, fmt.Errorf("%q has a bad port", shown)
		}
	}
	s.address = net.JoinHostPort(s.host, port)
	return s, nil
}

// dial connects to the servers in order (see [Authenticator.order]) and
// returns the first connection that is ready for a bind (TLS established
// where configured). Each server that fails is marked down, and the
// prober watches it from then on. When every server failed, the error is
// the TLS error ([*TLSError]) if every failure was one, and otherwise
// matches ErrUnavailable (and still holds any TLS errors for errors.As).
// The connection is the caller's alone, never pooled: the caller closes it.
//
// Logging: each failure is logged at Debug. When every server failed, the
// returned error says so, and nothing more is logged (an error is either
// logged or returned, never both); when a later server answered, the
// failures are not returned, so they are logged once: a TLS failure at
// Error (a certificate that does not verify may be an attack, or one that
// expired), the others at Warn (a server is down while logins carry on).
func (a *Authenticator) dial(ctx context.Context) (*conn, error) {
	a.probeDue()
	ord, ready := a.order()
	if ready > 1 && a.cfg.HedgeDelay > 0 && a.cfg.HedgeDelay < a.cfg.ConnectTimeout {
		if c, err, ok := a.dialHedged(ctx, ord, ready); ok {
			return c, err
		}
	}
	var errs []error
	allTLS := true
	for _, i := range ord {
		s := a.servers[i]
		dctx, op := a.obs.op(ctx, opDial, i)
		c, err := a.dialServer(dctx, s, i)
		op.done(err)
		if err == nil {
			c.server, c.health, c.now = i, &a.health[i], a.now
			c.obs = a.obs
			a.logFailover(ctx, s, errs)
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		a.health[i].down(a.now())
		errs, allTLS = a.dialFailed(ctx, s, err, errs, allTLS)
	}
	return nil, dialError(errs, allTLS)
}

// dialFailed logs the failure err of a connect to s at Debug and adds it
// to errs, the failures of one dial; allTLS stays true while every one is
// a [*TLSError].
func (a *Authenticator) dialFailed(ctx context.Context, s server, err error, errs []error, allTLS bool) ([]error, bool) {
	a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: server unreachable", slog.String("url", s.url), slog.String("error", err.Error()))
	if !isTLSError(err) {
		allTLS = false
		err = fmt.Errorf("%s: %w", s.url, err)
	}
	return append(errs, err), allTLS
}

// dialError is the error of a dial whose every connect failed with errs.
func dialError(errs []error, allTLS bool) error {
	switch {
	case allTLS && len(errs) == 1:
		return errs[0]
	case allTLS:
		return wrap(joined(errs), "TLS failed with every server")
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, joined(errs))
}

// attempt is the outcome of one connect of a hedged dial.
type attempt struct {
	server int
	c      *conn
	err    error
}

// hedge is what a hedged dial shares with its connects: once decided (a
// connect won, or the dial gave up), a connect that ends has nobody to
// report to and closes its connection itself.
type hedge struct {
	a       *Authenticator
	mu      sync.Mutex
	decided bool
	results chan attempt // buffered for every connect: a send never blocks
	// pending: the servers whose connect has not reported yet; lagging:
	// those the decision marked lagging (see health.lagging).
	pending, lagging map[int]bool
}

// report hands r to the dial, or closes its connection when the dial is
// decided. A connect that lost to a hedge stops counting as lagging once
// its result is recorded (a failure has marked its server down).
func (h *hedge) report(r attempt) {
	h.mu.Lock()
	delete(h.pending, r.server)
	if !h.decided {
		h.results <- r
		h.mu.Unlock()
		return
	}
	lagged := h.lagging[r.server]
	h.mu.Unlock()
	if r.err != nil && lagged {
		s := h.a.servers[r.server]
		h.a.cfg.Logger.LogAttrs(context.Background(), slog.LevelDebug, "ldapauth: server unreachable (a connect that lost to a hedge)",
			slog.String("url", s.url), slog.String("error", r.err.Error()))
	}
	if lagged {
		h.a.health[r.server].lagging.Add(-1)
	}
	if r.c != nil {
		r.c.close()
	}
}

// decide ends the dial's interest in its connects and closes the
// connections reported but not taken. When a connect won, the servers
// whose connect is still in flight are lagging until it ends.
func (h *hedge) decide(won bool) {
	h.mu.Lock()
	h.decided = true
	if won {
		for i := range h.pending {
			h.lagging[i] = true
			h.a.health[i].lagging.Add(1)
		}
	}
	h.mu.Unlock()
	for {
		select {
		case r := <-h.results:
			if r.c != nil {
				r.c.close()
			}
		default:
			return
		}
	}
}

// dialHedged is dial with hedging: it connects to the servers in the
// order ord, starting the next connect when the one before failed, or,
// among the first ready servers of ord (up, and with no connect that lost
// to a hedge in flight: see order), when the one before has not completed
// within the hedge delay; it returns the first connection ready for a
// bind. A server marked down is never hedged to: it is tried only when
// every server before it failed, as without hedging. Only connects are
// hedged; the caller binds on the one connection returned.
//
// A connect that loses goes on in the background until it ends (within
// the connect timeout; Close aborts it): a failure then marks its server
// down as any failed connect does, so later logins keep away from a
// black-holed server; a connection it makes is closed, and slowness alone
// marks nothing down. The caller's ctx ending before a connect won aborts
// them all. ok is false when the Authenticator is closing: no connect
// was started and the caller dials without hedging.
func (a *Authenticator) dialHedged(ctx context.Context, ord []int, ready int) (_ *conn, _ error, ok bool) {
	h := &hedge{a: a, results: make(chan attempt, len(ord)), pending: map[int]bool{}, lagging: map[int]bool{}}
	var detach []func() bool // each connect's link to ctx
	start := func(i int) bool {
		stopCaller, ok := h.start(ctx, i)
		if ok {
			detach = append(detach, stopCaller)
		}
		return ok
	}
	if !start(ord[0]) {
		return nil, nil, false
	}
	next, pending := 1, 1
	timer := time.NewTimer(a.cfg.HedgeDelay)
	defer timer.Stop()
	var errs []error
	allTLS := true
	launch := func(limit int) {
		if next < limit && start(ord[next]) {
			next++
			pending++
			timer.Reset(a.cfg.HedgeDelay)
		}
	}
	for {
		select {
		case r := <-h.results:
			pending--
			if r.err == nil {
				for _, d := range detach {
					d()
				}
				h.decide(true)
				a.logFailover(ctx, a.servers[r.server], errs)
				return r.c, nil, true
			}
			if ctx.Err() != nil {
				h.decide(false)
				return nil, ctxError(ctx), true
			}
			errs, allTLS = a.dialFailed(ctx, a.servers[r.server], r.err, errs, allTLS)
			launch(len(ord))
			if pending == 0 {
				h.decide(false)
				return nil, dialError(errs, allTLS), true
			}
		case <-timer.C:
			launch(ready)
		case <-ctx.Done():
			h.decide(false) // ctx aborts the connects in flight
			return nil, ctxError(ctx), true
		}
	}
}

// start starts the connect to server i in the background and returns its
// link to ctx; ok is false when the Authenticator is closing and no connect
// was started. A connect is aborted by ctx until the dial has a winner
// (the caller then calls stopCaller), and by Close; not by ctx after it has
// returned.
func (h *hedge) start(ctx context.Context, i int) (stopCaller func() bool, ok bool) {
	a := h.a
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopCaller = context.AfterFunc(ctx, cancel)
	stopClose := context.AfterFunc(a.probe.ctx, cancel)
	h.mu.Lock()
	h.pending[i] = true
	h.mu.Unlock()
	started := a.probe.goBackground(func() {
		defer cancel()
		defer stopClose()
		defer stopCaller()
		h.connect(actx, i)
	})
	if !started {
		h.mu.Lock()
		delete(h.pending, i)
		h.mu.Unlock()
		cancel()
		stopClose()
		stopCaller()
		return nil, false
	}
	return stopCaller, true
}

// connect dials server i and reports the attempt to the dial; a failure
// not caused by actx ending marks the server down.
func (h *hedge) connect(actx context.Context, i int) {
	a := h.a
	s := a.servers[i]
	dctx, op := a.obs.op(actx, opDial, i)
	c, err := a.dialServer(dctx, s, i)
	op.done(err)
	switch {
	case err == nil:
		c.server, c.health, c.now = i, &a.health[i], a.now
		c.obs = a.obs
	case actx.Err() == nil:
		a.health[i].down(a.now())
	}
	h.report(attempt{server: i, c: c, err: err})
}

// logFailover logs the failures of the servers tried before s, which then
// served the connection.
func (a *Authenticator) logFailover(ctx context.Context, s server, errs []error) {
	var others []error
	for _, err := range errs {
		var tlsErr *TLSError
		if errors.As(err, &tlsErr) {
			a.cfg.Logger.LogAttrs(ctx, slog.LevelError, "ldapauth: TLS failed; server marked down, failed over to another",
				slog.String("url", tlsErr.URL), slog.String("reason", unprefixed(tlsErr)), slog.String("next", s.url))
			continue
		}
		others = append(others, err)
	}
	if len(others) > 0 {
		a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: failed over to another server",
			slog.String("url", s.url), slog.String("errors", joined(others).Error()))
	}
}

// joined is errors.Join with one line: the messages without their
// "ldapauth: " prefix, separated by "; ".
type joined []error

func (j joined) Error() string {
	parts := make([]string, len(j))
	for i, err := range j {
		parts[i] = unprefixed(err)
	}
	return strings.Join(parts, "; ")
}

func (j joined) Unwrap() []error { return j }

// dialServer connects to s and secures the connection where configured:
// TLS at once for ldaps://, StartTLS first with LDAP_AUTH_USE_TLS. The
// whole of it is bounded by the connect timeout.
func (a *Authenticator) dialServer(ctx context.Context, s server, index int) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{}
	tcp, err := d.DialContext(dctx, "tcp", s.address)
	if err != nil {
		return nil, err
	}
	wire := &wireConn{Conn: tcp}
	var raw net.Conn = wire
	if s.ldaps || a.cfg.UseTLS {
		tc, err := a.secure(dctx, wire, s, index)
		if err != nil {
			wire.Close()
			if ctx.Err() != nil {
				return nil, ctxError(ctx)
			}
			return nil, err
		}
		raw = tc
	}
	l := ldap.NewConn(raw, raw != net.Conn(wire))
	// No l.SetTimeout: go-ldap uses that timeout for two things, the wait
	// for an answer and how long its reader waits to hand each received
	// packet to the goroutine running the operation, after which it drops
	// the packet without a word. A search whose goroutine is descheduled
	// for that long (a loaded machine) then loses an entry and still ends
	// in success: "no such user" for a right password. The receive
	// timeout is do's own instead.
	l.Start()
	return &conn{l: l, raw: raw, wire: wire, url: s.url, receiveTimeout: a.cfg.ReceiveTimeout}, nil
}

// secure runs the TLS handshake on the connection to s, after the StartTLS
// operation for an ldap:// URL. StartTLS is done here rather than by
// go-ldap, which turns the handshake's error into text: both modes then
// see the same errors and classify them alike (see tlsFailure).
func (a *Authenticator) secure(ctx context.Context, wire net.Conn, s server, index int) (*tls.Conn, error) {
	if s.ldaps {
		return a.handshake(ctx, wire, s)
	}
	_, op := a.obs.op(ctx, opStartTLS, index)
	tc, err := (*tls.Conn)(nil), startTLS(ctx, wire, s.url)
	if err == nil {
		tc, err = a.handshake(ctx, wire, s)
	}
	op.done(err)
	return tc, err
}

func (a *Authenticator) handshake(ctx context.Context, wire net.Conn, s server) (*tls.Conn, error) {
	tc := tls.Client(wire, a.tlsConfigFor(s.host))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, tlsFailure(s.url, err)
	}
	return tc, nil
}

// oidStartTLS names the StartTLS extended operation (RFC 4511 4.14).
const oidStartTLS = "1.3.6.1.4.1.1466.20037"

// startTLS sends the StartTLS request on a new connection and reads the
// answer, within ctx. A server that answers busy or unavailable is down
// for now (the error matches ErrUnavailable); any other refusal, or an
// answer that is not an LDAP result, is a [*TLSError]. A failed write or
// read is a network error.
func startTLS(ctx context.Context, c net.Conn, url string) error {
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 1, "MessageID"))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Start TLS")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "TLS Extended Command"))
	req.AppendChild(op)
	if _, err := c.Write(req.Bytes()); err != nil {
		return err
	}
	resp, err := ber.ReadPacket(c)
	if err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return err
		}
		return &TLSError{URL: url, Err: fmt.Errorf("StartTLS answered with a malformed packet: %w", err)}
	}
	err = ldap.GetLDAPError(resp)
	if err == nil && (len(resp.Children) < 2 || resp.Children[1].Tag != ldap.ApplicationExtendedResponse) {
		err = errors.New("not an extended response")
	}
	if err == nil {
		return nil
	}
	if ldap.IsErrorAnyOf(err, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable) {
		return fmt.Errorf("StartTLS: %w", err)
	}
	return &TLSError{URL: url, Err: fmt.Errorf("StartTLS refused: %w", err)}
}

// tlsFailure classifies a failed TLS handshake. A connection that died,
// timed out or was closed during it is a network error: the server is
// down. Anything else is a [*TLSError]: a certificate that does not verify
// (unknown authority, expired, wrong name), an alert from the server, or a
// server that does not speak TLS. The same rule holds for LDAPS and
// StartTLS.
func tlsFailure(url string, err error) error {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	return &TLSError{URL: url, Err: err}
}

// isTLSError reports whether err is a [*TLSError].
func isTLSError(err error) bool {
	var tlsErr *TLSError
	return errors.As(err, &tlsErr)
}

func (a *Authenticator) tlsConfigFor(host string) *tls.Config {
	tc := a.tlsBase.Clone()
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	return tc
}

// expire makes every blocked read or write on the socket fail at once.
func (c *conn) expire() { _ = c.raw.SetDeadline(time.Unix(1, 0)) }

// dead reports whether the connection is known to be closed.
func (c *conn) dead() bool { return c.wire.failed.Load() || c.l.IsClosing() }

// errReceiveTimeout is the cause of an operation ended by the receive
// timeout.
var errReceiveTimeout = errors.New("no answer within the receive timeout")

// do runs op, aborting it when ctx ends or when the receive timeout passes
// without op's whole answer. It marks the connection broken on any network
// error, records whether the connection was lost before any byte of the
// answer (see [Authenticator.session]), and keeps the server's back-off
// state: an answer clears it, a failure extends it, except for a pooled
// connection found dead before answering, which says nothing about the
// server.
//
// Either end expires the socket, which makes go-ldap fail op at once; the
// connection is then broken, never reused, so a late answer reaches no one.
func (c *conn) do(ctx context.Context, op func() error) error {
	c.lost = false
	if err := ctx.Err(); err != nil {
		c.broken = true
		return ctxError(ctx)
	}
	before := c.wire.read.Load()
	stop := context.AfterFunc(ctx, c.expire)
	var timer *time.Timer
	if c.receiveTimeout > 0 {
		timer = time.AfterFunc(c.receiveTimeout, c.expire)
	}
	err := op()
	stopped := timer == nil || timer.Stop()
	if !stop() {
		c.broken = true
		return ctxError(ctx)
	}
	if !stopped {
		// The server may still be working on the request: not lost, so
		// never sent again.
		c.broken = true
		c.health.down(c.now())
		return ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("%s: %w (%s)", c.url, errReceiveTimeout, c.receiveTimeout))
	}
	if err == nil {
		c.health.up()
		return nil
	}
	dead := c.dead()
	var ldapErr *ldap.Error
	if errors.As(err, &ldapErr) && ldapErr.ResultCode != ldap.ErrorNetwork {
		// The server answered (invalid credentials, busy...), or go-ldap
		// found a fault in what it sent.
		switch {
		case isNetworkError(err): // busy, unavailable
			c.broken = true
			c.health.down(c.now())
		case dead || ldapErr.ResultCode == ldap.ErrorUnexpectedMessage || ldapErr.ResultCode == ldap.ErrorUnexpectedResponse:
			c.broken = true
		default:
			c.health.up()
		}
		return err
	}
	c.broken = true
	if !dead {
		// A fault go-ldap gives no code: the server may still be
		// working on the request.
		if isNetworkError(err) {
			c.health.down(c.now())
		}
		return err
	}
	c.lost = c.wire.read.Load() == before
	if !(c.lost && c.reused) {
		c.health.down(c.now())
	}
	if !isNetworkError(err) {
		// go-ldap reports a failed write as a plain error.
		err = ldap.NewError(ldap.ErrorNetwork, err)
	}
	return err
}

// bind binds as name with password, sending controls with the request, and
// returns the response controls, which a server also sends on a refused
// bind (the password policy control says why).
func (c *conn) bind(ctx context.Context, name, password string, controls ...ldap.Control) ([]ldap.Control, error) {
	ctx, op := c.obs.op(ctx, opBind, c.server)
	var resp []ldap.Control
	err := c.do(ctx, func() error {
		res, err := c.l.SimpleBind(&ldap.SimpleBindRequest{Username: name, Password: password, Controls: controls})
		if res != nil {
			resp = res.Controls
		}
		return err
	})
	op.done(err)
	return resp, err
}

func (c *conn) Search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	ctx, op := c.obs.op(ctx, opSearch, c.server)
	var res *ldap.SearchResult
	err := c.do(ctx, func() error {
		var err error
		res, err = c.l.Search(req)
		return err
	})
	op.done(err)
	return res, err
}

func (c *conn) close() {
	c.uncount()
	if c.l != nil {
		_ = c.l.Close()
	}
}

// isNetworkError reports whether err means the connection is unusable or
// the server is unavailable.
func isNetworkError(err error) bool {
	if isTLSError(err) {
		// A TLS failure wraps no network error, but a StartTLS answer
		// that is not an LDAP result carries go-ldap's ErrorNetwork code.
		return false
	}
	var ldapErr *ldap.Error
	if errors.As(err, &ldapErr) {
		switch ldapErr.ResultCode {
		case ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable, ldap.LDAPResultServerDown,
			ldap.LDAPResultTimeout, ldap.LDAPResultConnectError:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// classifyNetwork wraps err with ErrUnavailable when it is a network or
// availability problem.
func classifyNetwork(err error) error {
	if err != nil && isNetworkError(err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// ctxError returns ctx's error; a deadline also matches ErrUnavailable.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("ldapauth: %w", err)
}
