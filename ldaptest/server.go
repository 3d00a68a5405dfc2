package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/glauth/glauth/v2/pkg/handler"
	"github.com/glauth/ldap"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/go-ldapauth/ldapauth/internal/testcert"
)

// Server is a GLAuth LDAP directory serving on 127.0.0.1 until Close. It
// listens twice: URL is plain LDAP that accepts StartTLS, LDAPSURL is LDAP
// over TLS; both use a certificate for 127.0.0.1 and localhost signed by a
// CA made for this server (CAPool, CACertPEM).
//
// A Server's methods are safe for concurrent use by multiple goroutines.
type Server struct {
	url, ldapsURL string
	ca            *testcert.CA
	plain, secure *ldap.Server
	plainLn       *trackingListener
	secureLn      *trackingListener
	tracker       *connTracker
	handlers      *dispatcher
	tracer        trace.Tracer
	serveDone     sync.WaitGroup
	closeOnce     sync.Once

	mu  sync.RWMutex
	dir Directory
}

// NewServer validates d (see Directory.Validate), creates a CA and a server
// certificate, and starts serving d on two loopback listeners. The caller
// must call Close.
func NewServer(d Directory) (*Server, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	ca, err := testcert.NewCA("ldaptest CA")
	if err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	pair, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	cert, err := pair.TLSCertificate()
	if err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	secureLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		plainLn.Close()
		return nil, fmt.Errorf("ldaptest: %w", err)
	}

	s := &Server{
		url:      "ldap://" + plainLn.Addr().String(),
		ldapsURL: "ldaps://" + secureLn.Addr().String(),
		ca:       ca,
		tracker:  newConnTracker(),
		tracer:   noop.NewTracerProvider().Tracer("ldaptest"),
		dir:      d,
	}
	s.handlers = &dispatcher{tracker: s.tracker}
	s.handlers.set(newHandler(d, s.tracer))
	s.plainLn = newTrackingListener(plainLn, s.tracker)
	s.secureLn = newTrackingListener(secureLn, s.tracker)

	// One ldap.Server per listener: Serve and Close share the server's Quit
	// channel, which a second Serve would close twice.
	s.plain = s.newLDAPServer()
	s.plain.TLSConfig = tlsConfig // enables StartTLS
	s.secure = s.newLDAPServer()

	s.serveDone.Add(2)
	go func() {
		defer s.serveDone.Done()
		s.plain.Serve(s.plainLn)
	}()
	go func() {
		defer s.serveDone.Done()
		s.secure.Serve(tls.NewListener(s.secureLn, tlsConfig))
	}()
	return s, nil
}

// Start is NewServer for tests: it fails tb on error and closes the server
// when the test ends.
func Start(tb testing.TB, d Directory) *Server {
	tb.Helper()
	s, err := NewServer(d)
	if err != nil {
		tb.Fatalf("ldaptest.Start: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

func (s *Server) newLDAPServer() *ldap.Server {
	srv := ldap.NewServer()
	srv.EnforceLDAP = true // apply filters, scopes, attribute lists and size limits
	srv.BindFunc("", s.handlers)
	srv.SearchFunc("", s.handlers)
	srv.CloseFunc("", s.handlers)
	return srv
}

// URL returns the plain listener's URL, ldap://127.0.0.1:PORT. It accepts
// StartTLS.
func (s *Server) URL() string { return s.url }

// LDAPSURL returns the TLS listener's URL, ldaps://127.0.0.1:PORT.
func (s *Server) LDAPSURL() string { return s.ldapsURL }

// CACertPEM returns the PEM certificate of the CA that signed the server's
// certificate, for a CA file setting.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.ca.CertPEM...) }

// CAPool returns a new pool that trusts only the server's CA.
func (s *Server) CAPool() *x509.CertPool { return s.ca.Pool() }

// BaseDN returns the base DN of the current directory.
func (s *Server) BaseDN() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dir.BaseDN
}

// UserDN returns the DN the server reports for the user named name (matched
// case-insensitively): uid=<Name>,cn=<primary group>,ou=users,<BaseDN>, with
// the names as the directory spells them and no RFC 4514 escaping, because
// GLAuth does none. It returns "" for an unknown user.
func (s *Server) UserDN(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, u := range s.dir.Users {
		if strings.EqualFold(u.Name, name) {
			return fmt.Sprintf("uid=%s,cn=%s,ou=users,%s", u.Name, s.groupNameLocked(u.PrimaryGroup), s.dir.BaseDN)
		}
	}
	return ""
}

// UsersBase returns cn=<group>,ou=users,<BaseDN> for the primary group
// most users share (the first such in the Directory's order), the branch
// holding their entries: the search base Env sets. With no users it
// returns BaseDN.
func (s *Server) UsersBase() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	count := map[string]int{}
	best := ""
	for _, u := range s.dir.Users {
		g := strings.ToLower(s.groupNameLocked(u.PrimaryGroup))
		count[g]++
		if best == "" || count[g] > count[best] {
			best = g
		}
	}
	if best == "" {
		return s.dir.BaseDN
	}
	return "cn=" + best + ",ou=users," + s.dir.BaseDN
}

// GroupDN returns the DN of the group named name as it appears in memberOf
// values and as the entry below ou=groups: cn=<name>,ou=groups,<BaseDN>. The
// group need not exist.
func (s *Server) GroupDN(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fmt.Sprintf("cn=%s,ou=groups,%s", s.groupNameLocked(name), s.dir.BaseDN)
}

// groupNameLocked returns the directory's spelling of group name.
func (s *Server) groupNameLocked(name string) string {
	for _, g := range s.dir.Groups {
		if strings.EqualFold(g.Name, name) {
			return g.Name
		}
	}
	return name
}

// Env returns the ldapauth (Flagsmith) environment variables that make a
// login against this server work as the user, with the default username
// formatter (uid=<username>,<search base>):
//
//   - LDAP_AUTH_URL: URL(), plain LDAP. For StartTLS add LDAP_AUTH_USE_TLS=true
//     and trust CACertPEM; for LDAPS use LDAPSURL instead.
//   - LDAP_AUTH_SEARCH_BASE: UsersBase(), cn=<primary group>,ou=users,<BaseDN>
//     for the primary group most users share, so that the bind DN the
//     formatter makes is the user's entry DN. GLAuth also binds
//     uid=<name>,<BaseDN>, but that name is not the entry's DN and GLAuth
//     does not answer Who Am I (RFC 4532), so ldapauth cannot prove who
//     such a bind logged in and refuses it. Users of another primary group
//     log in with LDAP_AUTH_SEARCH_THEN_BIND and the service account.
//   - LDAP_AUTH_OBJECT_CLASS: posixAccount. GLAuth's users are posixAccount
//     and shadowAccount, never inetOrgPerson (the ldapauth default).
//   - LDAP_AUTH_USER_FIELDS: username=uid,first_name=givenName,last_name=sn,email=mail.
//
// LDAP_AUTH_CONNECTION_USERNAME and LDAP_AUTH_CONNECTION_PASSWORD (and the
// LDAP_SYNC_USER_* pair) are not set: searching as a service account is
// opt-in. Set them to the Directory's ServiceAccount, as UserDN(name) or
// uid=<name>,<BaseDN>, and its password. The login group and synced groups
// are DNs from GroupDN.
//
// The map is new on each call.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"LDAP_AUTH_URL":          s.URL(),
		"LDAP_AUTH_SEARCH_BASE":  s.UsersBase(),
		"LDAP_AUTH_OBJECT_CLASS": "posixAccount",
		"LDAP_AUTH_USER_FIELDS":  "username=uid,first_name=givenName,last_name=sn,email=mail",
	}
}

// SetDirectory replaces the served data with d, for tests of a directory
// that changes between two syncs. Binds and searches that already started
// finish on the old data; later ones see d. Connections stay open and keep
// their bind, even if their user is gone from d. It returns d.Validate's
// error and then keeps the old data.
func (s *Server) SetDirectory(d Directory) error {
	if err := d.Validate(); err != nil {
		return err
	}
	h := newHandler(d, s.tracer)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir = d
	s.handlers.set(h)
	return nil
}

// CloseClientConnections closes every open client connection, as
// httptest.Server's method of that name does: the next operation on a
// connection a client opened before fails. The server keeps listening.
func (s *Server) CloseClientConnections() {
	s.tracker.closeAll(false)
}

// Close stops the listeners, closes every client connection and waits for
// GLAuth's goroutines to end. It may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		for _, l := range []struct {
			srv *ldap.Server
			ln  *trackingListener
		}{{s.plain, s.plainLn}, {s.secure, s.secureLn}} {
			// Close the listener first and wait until GLAuth's accept
			// goroutine has seen the error, so that it is not left blocked
			// handing a last connection to a Serve loop that has quit.
			l.ln.Close()
			<-l.ln.done
			l.srv.Close() // ends Serve
		}
		s.tracker.closeAll(true)
		s.tracker.serving.Wait()
		s.serveDone.Wait()
	})
}

// dispatcher is the Binder, Searcher and Closer that GLAuth's ldap.Server
// calls: it forwards to the config handler of the current directory, which
// SetDirectory swaps atomically.
type dispatcher struct {
	current atomic.Pointer[handler.Handler]
	tracker *connTracker
}

func (d *dispatcher) set(h handler.Handler) { d.current.Store(&h) }

func (d *dispatcher) Bind(bindDN, password string, conn net.Conn) (ldap.LDAPResultCode, error) {
	return (*d.current.Load()).Bind(bindDN, password, conn)
}

func (d *dispatcher) Search(boundDN string, req ldap.SearchRequest, conn net.Conn) (ldap.ServerSearchResult, error) {
	return (*d.current.Load()).Search(boundDN, req, conn)
}

// Close is the last call of GLAuth's loop for one connection.
func (d *dispatcher) Close(boundDN string, conn net.Conn) error {
	d.tracker.serving.Done()
	return nil
}

// newHandler builds GLAuth's config handler for d with a silent logger, a
// no-op tracer and no-op metrics.
func newHandler(d Directory, tracer trace.Tracer) handler.Handler {
	cfg := d.glauthConfig()
	logger := zerolog.Nop()
	return handler.NewConfigHandler(
		handler.Backend(cfg.Backends[0]),
		handler.Logger(&logger),
		handler.Config(cfg),
		handler.LDAPHelper(handler.NewLDAPOpsHelper(tracer)),
		handler.Monitor(noopMonitor{}),
		handler.Tracer(tracer),
	)
}

// noopMonitor implements GLAuth's internal monitoring.MonitorInterface.
type noopMonitor struct{}

func (noopMonitor) SetResponseTimeMetric(map[string]string, float64) error { return nil }
func (noopMonitor) SetLDAPMetric(map[string]string, float64) error         { return nil }
