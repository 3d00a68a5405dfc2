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
// Flags:
//
//	-addr 127.0.0.1:8080   where to listen
//	-db loginserver.db     a SQLite file, or a postgres:// URL (default: $DATABASE_URL if set)
//	-tls-cert, -tls-key    serve HTTPS with this certificate and key
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
)

func main() {
	defaultDB := "loginserver.db"
	if v := os.Getenv("DATABASE_URL"); v != "" {
		defaultDB = v
	}
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	db := flag.String("db", defaultDB, "database: a SQLite file or a postgres:// URL (default $DATABASE_URL if set)")
	cert := flag.String("tls-cert", "", "TLS certificate file (PEM): serve HTTPS")
	key := flag.String("tls-key", "", "TLS key file (PEM)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, *addr, *db, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "loginserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, addr, dsn, certFile, keyFile string) error {
	if (certFile == "") != (keyFile == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	cfg, dir, err := demo.Setup()
	if err != nil {
		return err
	}
	var demoInfo *demoPage
	if dir != nil {
		defer dir.Close()
		demoInfo = newDemoPage(dir)
		logger.Info("LDAP_AUTH_URL is not set: serving the embedded demo directory", "url", dir.URL())
	}

	store, err := sqlstore.OpenDSN(ctx, dsn)
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

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           withMetrics(newServer(options{Auth: auth, Store: store, Logger: logger, Demo: demoInfo}), met.Handler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	logger.Info("listening", "url", scheme+"://"+ln.Addr().String(), "db", sqlstore.Redact(dsn))

	served := make(chan error, 1)
	go func() {
		if certFile != "" {
			served <- srv.ServeTLS(ln, certFile, keyFile)
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
