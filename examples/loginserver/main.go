// Command loginserver is a web login against an LDAP directory with
// ldapauth: an HTML login page and a JSON endpoint, users and synced groups
// kept in a SQL database (examples/sqlstore).
//
// It reads the LDAP_AUTH_* variables like Flagsmith (ldapauth.ConfigFromEnv).
// With LDAP_AUTH_URL unset it starts the embedded demo directory and shows
// its accounts on the login page:
//
//	go run ./examples/loginserver              # then open http://127.0.0.1:8080
//
// Every flag can also be set by an environment variable: LOGINSERVER_ and
// the flag's name in upper case with - as _ (-public-url is
// LOGINSERVER_PUBLIC_URL); a flag given on the command line wins. -db
// defaults to $DATABASE_URL. The flags, their defaults and the reasons for
// them are in docs/loginserver.md.
//
// Routes: GET / (the login page, or the signed-in user), POST /login,
// POST /logout, POST /api/login (JSON {"username", "password"}), GET /api/me,
// POST /api/logout, GET /healthz, GET /metrics (Prometheus text format).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
)

// settings are the login server's flags.
type settings struct {
	addr, db, certFile, keyFile string
	publicURL                   string
	trustedProxies              string
	detailedErrors              bool
	sessionTTL                  time.Duration
	maxSessions                 int
	sweepInterval               time.Duration
	throttle                    throttleConfig
}

// defaultSettings are the defaults of the flags.
func defaultSettings() settings {
	return settings{addr: "127.0.0.1:8080", db: "loginserver.db", sessionTTL: 8 * time.Hour, maxSessions: 10,
		sweepInterval: 5 * time.Minute, throttle: defaultThrottle}
}

// parseFlags reads the flags from args, with defaults from the
// LOGINSERVER_* variables (and -db from DATABASE_URL) of lookup.
func parseFlags(args []string, lookup func(string) (string, bool)) (settings, error) {
	st := defaultSettings()
	if v, ok := lookup("DATABASE_URL"); ok && v != "" {
		st.db = v
	}
	fs := flag.NewFlagSet("loginserver", flag.ContinueOnError)
	fs.StringVar(&st.addr, "addr", st.addr, "address to listen on")
	fs.StringVar(&st.db, "db", st.db, "database: a SQLite file or a postgres:// URL (default $DATABASE_URL if set)")
	fs.StringVar(&st.certFile, "tls-cert", "", "TLS certificate file (PEM): serve HTTPS")
	fs.StringVar(&st.keyFile, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&st.publicURL, "public-url", "", "the URL people use, e.g. https://login.example.com: https makes the session cookie Secure with the __Host- prefix")
	fs.StringVar(&st.trustedProxies, "trusted-proxies", "", "addresses or CIDR prefixes of the proxies in front, whose X-Forwarded-For and X-Forwarded-Proto are believed")
	fs.BoolVar(&st.detailedErrors, "detailed-errors", false, "tell a right password outside the login group, and a locked account, apart from a wrong password")
	fs.DurationVar(&st.sessionTTL, "session-ttl", st.sessionTTL, "how long a session lasts")
	fs.IntVar(&st.maxSessions, "max-sessions", st.maxSessions, "sessions per user; the oldest end beyond it (0: no cap)")
	fs.DurationVar(&st.sweepInterval, "sweep-interval", st.sweepInterval, "how often expired sessions and stale counters are deleted")
	fs.IntVar(&st.throttle.UserLimit, "throttle-user-limit", st.throttle.UserLimit, "failed attempts per username before 429 (keep it below the directory's lockout threshold)")
	fs.IntVar(&st.throttle.KnownClientLimit, "throttle-known-client-limit", st.throttle.KnownClientLimit, "the same, from a client the user signed in from before")
	fs.DurationVar(&st.throttle.UserLock, "throttle-user-lock", st.throttle.UserLock, "how long a username's failed attempts count, and it stays throttled, after the last one")
	fs.IntVar(&st.throttle.ClientLimit, "throttle-client-limit", st.throttle.ClientLimit, "failed attempts per client address, whatever the usernames, before 429")
	fs.BoolVar(&st.throttle.Off, "throttle-off", false, "no throttling (only behind a gateway that throttles)")
	var envErrs []error
	given := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		name := "LOGINSERVER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(name); ok && v != "" {
			given[f.Name] = true
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return st, err
	}
	if err := fs.Parse(args); err != nil {
		return st, err
	}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["throttle-known-client-limit"] {
		// One attempt more than anyone else: a lower -throttle-user-limit
		// (a directory that locks sooner) lowers it too.
		st.throttle.KnownClientLimit = st.throttle.UserLimit + 1
	}
	if (st.certFile == "") != (st.keyFile == "") {
		return st, errors.New("-tls-cert and -tls-key go together")
	}
	if st.sessionTTL <= 0 || st.sweepInterval <= 0 || st.maxSessions < 0 {
		return st, errors.New("-session-ttl and -sweep-interval must be positive, -max-sessions at least 0")
	}
	if err := st.throttle.validate(); err != nil {
		return st, err
	}
	return st, nil
}

func main() {
	st, err := parseFlags(os.Args[1:], os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loginserver:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, st); err != nil {
		fmt.Fprintln(os.Stderr, "loginserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, st settings) error {
	o, err := st.options(logger)
	if err != nil {
		return err
	}
	cfg, dir, err := demo.Setup()
	if err != nil {
		return err
	}
	var demoInfo *demoPage
	if dir != nil {
		defer dir.Close()
		demoInfo = newDemoPage(dir)
		// The demo lists mallory as inactive: this filter keeps her out,
		// as a filter on your directory's account status would.
		cfg.SearchFilters = demo.ActiveOnly{Filters: cfg.SearchFilters}
		logger.Info("LDAP_AUTH_URL is not set: serving the embedded demo directory", "url", dir.URL())
	}

	store, err := sqlstore.OpenDSN(ctx, st.db)
	if err != nil {
		return err
	}
	defer store.Close()
	cfg.Store = store
	cfg.Logger = logger
	met, err := newMetrics()
	if err != nil {
		return err
	}
	defer met.Shutdown(context.Background())
	cfg.MeterProvider = met.Provider
	auth, err := ldapauth.New(cfg)
	if err != nil {
		return err
	}
	defer auth.Close()
	o.Auth, o.Store, o.Demo = auth, store, demoInfo
	o.MeterProvider = met.Provider

	stopSweep := startSweep(store, st, logger)
	defer stopSweep()

	ln, err := net.Listen("tcp", st.addr)
	if err != nil {
		return err
	}
	return serveUntilDone(ctx, logger, st, ln, newHTTPServer(o, met, logger))
}

// options are the server's options the flags set; run adds the directory,
// the store and the metrics.
func (st settings) options(logger *slog.Logger) (options, error) {
	o := options{Logger: logger, SessionTTL: st.sessionTTL, MaxSessions: st.maxSessions, DetailedErrors: st.detailedErrors, Throttle: st.throttle}
	if o.MaxSessions == 0 {
		o.MaxSessions = -1 // the flag's 0 is "no cap"
	}
	if st.publicURL != "" {
		u, err := url.Parse(st.publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return o, fmt.Errorf("-public-url %q: want http:// or https:// and a host", st.publicURL)
		}
		o.PublicURL = u
	}
	var err error
	if o.TrustedProxies, err = parseProxies(st.trustedProxies); err != nil {
		return o, err
	}
	return o, nil
}

// startSweep deletes expired sessions and stale counters every
// -sweep-interval until the returned stop, which waits for the sweep to end.
func startSweep(store *sqlstore.Store, st settings, logger *slog.Logger) (stop func()) {
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweep(sweepCtx, store, st.throttle, st.sweepInterval, func(err error) { logger.Error("sweep", "err", err) })
	}()
	return func() { stopSweep(); <-swept }
}

// newHTTPServer is the login server's handler, with /metrics, behind the
// timeouts a server facing the internet needs.
func newHTTPServer(o options, met *metrics, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           withMetrics(newServer(o), met.Handler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serveUntilDone serves HTTP, or HTTPS with -tls-cert, on ln until ctx is done, then
// shuts srv down once the requests in flight have finished.
func serveUntilDone(ctx context.Context, logger *slog.Logger, st settings, ln net.Listener, srv *http.Server) error {
	scheme := "http"
	if st.certFile != "" {
		scheme = "https"
	}
	logger.Info("listening", "url", scheme+"://"+ln.Addr().String(), "db", sqlstore.Redact(st.db))

	served := make(chan error, 1)
	go func() {
		if st.certFile != "" {
			served <- srv.ServeTLS(ln, st.certFile, st.keyFile)
		} else {
			served <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing the requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}
