package ldapauth_test

// The examples of this file hold the Go snippets of README.md and docs/*.md:
// TestDocs (docs_test.go) checks that each snippet appears, line for line, in
// a function of a _test.go file, so a snippet compiles with the tests and
// cannot drift from the API.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"go.opentelemetry.io/otel"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// The README's "Using it": read the configuration from the environment, log
// a user in, and tell the outcomes apart.
func Example_readme() {
	dir, err := ldaptest.NewServer(ldaptest.DemoDirectory())
	if err != nil {
		log.Fatal(err)
	}
	defer dir.Close()
	for k, v := range dir.Env() { // in a real program, the deployment sets these
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}
	myStore := ldapauth.NewMemStore()
	ctx := context.Background()
	username, password := "alice", "alice-password"

	cfg, err := ldapauth.ConfigFromEnv()
	if errors.Is(err, ldapauth.ErrNotConfigured) {
		return // LDAP_AUTH_URL is unset: run with LDAP login off, as Flagsmith does
	}
	if err != nil {
		log.Fatal(err) // every bad variable is named, in one error
	}
	cfg.Store = myStore // your users and groups: an ldapauth.UserStore
	auth, err := ldapauth.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer auth.Close()

	user, err := auth.Authenticate(ctx, username, password)
	switch {
	case errors.Is(err, ldapauth.ErrInvalidCredentials): // wrong password, unknown user, locked...
	case errors.Is(err, ldapauth.ErrNotPermitted): // right password, outside the login group
	case errors.Is(err, ldapauth.ErrUnavailable): // no server answered in time
	case err != nil: // configuration, store or syncer failure
	default:
		fmt.Println(user.Username, user.Fields["email"])
	}
	// Output:
	// alice alice@example.com
}

// The sync job, Flagsmith's sync_ldap_users_and_groups, from a command with
// -dry-run and -force flags.
func ExampleAuthenticator_Sync() {
	var dryRun, force bool // from the command's flags
	ctx := context.Background()
	cfg, err := ldapauth.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cfg.Store = ldapauth.NewMemStore() // your UserStore
	auth, err := ldapauth.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer auth.Close()

	rep, err := auth.Sync(ctx, ldapauth.SyncOptions{DryRun: dryRun, Force: force})
	switch {
	case errors.Is(err, ldapauth.ErrRemovalGuard):
		rep.WriteText(os.Stderr) // the plan: check it, then run with Force
		os.Exit(3)
	case err != nil:
		log.Fatal(err) // ErrSyncAborted (nothing removed), ErrConfig, or a store error mid-apply
	default:
		rep.WriteText(os.Stdout) // or json.NewEncoder(os.Stdout).Encode(rep)
	}
}

// Pool, server and login numbers, as database/sql's DB.Stats gives them.
func ExampleAuthenticator_Stats() {
	auth, err := ldapauth.New(&ldapauth.Config{URLs: []string{"ldap://ldap.example.com"}, Store: ldapauth.NewMemStore()})
	if err != nil {
		log.Fatal(err)
	}
	defer auth.Close()

	st := auth.Stats()
	fmt.Println(st.Users.InUse, st.Servers[0].Up, st.Logins.Unavailable)
	// Output:
	// 0 true 0
}

// Spans and metrics go to the providers set on the Config, or to
// OpenTelemetry's global ones.
func Example_openTelemetry() {
	meterProvider, tracerProvider := otel.GetMeterProvider(), otel.GetTracerProvider()
	cfg, err := ldapauth.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}

	cfg.MeterProvider = meterProvider   // nil: otel.GetMeterProvider()
	cfg.TracerProvider = tracerProvider // nil: otel.GetTracerProvider()
	cfg.TraceUsernames = false          // true: user.name on the login span, error messages in span statuses
}
