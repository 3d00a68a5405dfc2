package ldapauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	// (EnvConnectionUsername, EnvSyncUsername); empty for the user logging
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

// dial connects to the servers in order, those in back-off last, and
// returns the first connection that is ready for a bind (TLS established
// where configured). It returns an error matching ErrUnavailable when every
// server failed. The connection is the caller's alone, never pooled: the
// caller closes it.
//
// Logging: each failure is logged at Debug. When every server failed, the
// returned error says so, and nothing more is logged (an error is either
// logged or returned, never both); when a later server answered, the
// failures are not returned, so they are logged once at Warn: a server is
// down while logins carry on.
func (a *Authenticator) dial(ctx context.Context) (*conn, error) {
	var errs []error
	for _, i := range a.order() {
		s := a.servers[i]
		dctx, op := a.obs.op(ctx, opDial, i)
		c, err := a.dialServer(dctx, s, i)
		op.done(err)
		if err == nil {
			c.server, c.health, c.now = i, &a.health[i], a.now
			c.obs = a.obs
			if len(errs) > 0 {
				a.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ldapauth: failed over to another server",
					slog.String("url", s.url), slog.String("errors", errors.Join(errs...).Error()))
			}
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		var tlsErr *TLSError
		if errors.As(err, &tlsErr) {
			// A certificate problem is a configuration fault, not an outage:
			// report it rather than hiding it behind the next server.
			return nil, err
		}
		a.health[i].down(a.now())
		a.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ldapauth: server unreachable", slog.String("url", s.url), slog.String("error", err.Error()))
		errs = append(errs, fmt.Errorf("%s: %w", s.url, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

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
	tlsConf := a.tlsConfigFor(s.host)
	if s.ldaps {
		tc := tls.Client(raw, tlsConf)
		if err := tc.HandshakeContext(dctx); err != nil {
			raw.Close()
			return nil, tlsFailure(s.url, err)
		}
		raw = tc
	}
	l := ldap.NewConn(raw, s.ldaps)
	// No l.SetTimeout: go-ldap uses that timeout for two things, the wait
	// for an answer and how long its reader waits to hand each received
	// packet to the goroutine running the operation, after which it drops
	// the packet without a word. A search whose goroutine is descheduled
	// for that long (a loaded machine) then loses an entry and still ends
	// in success: "no such user" for a right password. The receive
	// timeout is do's own instead.
	l.Start()
	c := &conn{l: l, raw: raw, wire: wire, url: s.url, receiveTimeout: a.cfg.ReceiveTimeout}
	if a.cfg.UseTLS && !s.ldaps { // an ldaps:// server is TLS already
		// The handshake inside StartTLS has no context of its own: bound it
		// by the socket deadline, then clear the deadline.
		deadline, _ := dctx.Deadline()
		_ = raw.SetDeadline(deadline)
		stop := context.AfterFunc(dctx, c.expire)
		_, op := a.obs.op(ctx, opStartTLS, index)
		err := l.StartTLS(tlsConf)
		stopped := stop()
		op.done(err)
		_ = raw.SetDeadline(time.Time{})
		if err != nil || !stopped {
			c.close()
			if ctx.Err() != nil {
				return nil, ctxError(ctx)
			}
			if err == nil {
				err = context.DeadlineExceeded
			}
			var ldapErr *ldap.Error
			if errors.As(err, &ldapErr) && ldapErr.ResultCode != ldap.ErrorNetwork {
				return nil, &TLSError{URL: s.url, Err: fmt.Errorf("StartTLS refused: %w", err)}
			}
			if strings.Contains(err.Error(), "TLS handshake failed") {
				return nil, tlsFailure(s.url, err)
			}
			return nil, err
		}
	}
	return c, nil
}

// tlsFailure tells certificate problems (a configuration fault) from a
// connection that died during the handshake.
func tlsFailure(url string, err error) error {
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	msg := err.Error()
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) ||
		strings.Contains(msg, "certificate") || strings.Contains(msg, "x509") {
		return &TLSError{URL: url, Err: err}
	}
	return err
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

// Search implements [Directory] on the connection.
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
