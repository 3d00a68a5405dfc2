// Command syncgroups is Flagsmith's sync_ldap_users_and_groups job: it
// brings the users and synced groups of a SQL database (examples/sqlstore)
// in step with an LDAP directory, with ldapauth's Authenticator.Sync. Run it
// every hour, from cron or a Kubernetes CronJob.
//
// It reads the LDAP_AUTH_* and LDAP_SYNC_* variables like Flagsmith
// (ldapauth.LoadConfig). With LDAP_AUTH_URL unset it syncs the embedded demo
// directory instead:
//
//	go run ./examples/syncgroups -dry-run -create-users   # what a first sync would create
//	go run ./examples/syncgroups -create-users            # fill the database
//	go run ./examples/syncgroups                          # again: nothing to do
//
// Flags:
//
//	-db loginserver.db   a SQLite file, or a postgres:// URL (default: $DATABASE_URL if set);
//	                     the login server's default, so the two programs share the database
//	-dry-run             plan, print the plan, write nothing
//	-force               remove even when the removal guard refuses, or removals are held back
//	-create-users        also create the directory users that never logged in
//	-json                print the report as JSON instead of the summary for people
//	-quiet               no progress on stderr
//	-textfile PATH.prom  also write the run's numbers as Prometheus metrics to this file, for
//	                     node_exporter's textfile collector (replaced atomically each run)
//	-changes             read only what changed since the last run (Authenticator.SyncChanges:
//	                     OpenLDAP's syncprov, Active Directory's DirSync; the cookie is kept in
//	                     the database); the first run, and any run the directory refuses the
//	                     cookie, reads everything
//	-watch               keep running: apply each directory change as it arrives
//	                     (Authenticator.WatchChanges), one report per run, until SIGTERM
//	-poll 5s             with -watch on Active Directory: how often to ask DirSync for changes
//
// The report goes to stdout; progress (a bar on a terminal, plain lines
// otherwise) and the reason for a failure go to stderr. Exit status: 0 the
// sync ran (or planned, with -dry-run); 1 it failed (directory or database
// unreachable, the sync aborted, a write failed); 2 bad flags or
// configuration; 3 the removal guard refused, nothing removed (the plan is
// on stdout: check it, then run once with -force); 4 another sync holds the
// lease, nothing done (the message says since when and which host and
// process).
//
// One run at a time: a run (not a dry run) takes the database's sync lease
// (sqlstore.Store.AcquireSyncLease) before it reads anything, so of several
// replicas scheduling the job, one runs and the others exit at once with
// status 4.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
)

// Exit statuses.
const (
	exitOK      = 0 // synced, or planned with -dry-run
	exitFailure = 1 // the sync or the database failed
	exitUsage   = 2 // bad flags or configuration
	exitGuard   = 3 // the removal guard refused: nothing removed
	exitLease   = 4 // another sync holds the lease: nothing done
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// options are the command's flags.
type options struct {
	db                         string
	dryRun, force, createUsers bool
	json, quiet                bool
	textfile                   string
	changes, watch             bool
	poll                       time.Duration
}

// parseFlags reads args and prints what is wrong with them; the error is
// flag.ErrHelp for -h.
func parseFlags(args []string, stderr io.Writer, lookup func(string) (string, bool)) (options, error) {
	var o options
	defaultDB := "loginserver.db"
	if v, ok := lookup("DATABASE_URL"); ok && v != "" {
		defaultDB = v
	}
	fs := flag.NewFlagSet("syncgroups", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.db, "db", defaultDB, "database: a SQLite file or a postgres:// URL (default $DATABASE_URL if set)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "plan and print the changes, write nothing")
	fs.BoolVar(&o.force, "force", false, "remove users, groups and memberships even when the removal guard refuses or removals are held back")
	fs.BoolVar(&o.createUsers, "create-users", false, "also create the directory users that never logged in")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr")
	fs.StringVar(&o.textfile, "textfile", "", "also write the run's numbers as Prometheus metrics to this .prom file (node_exporter textfile collector)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: syncgroups [flags]\n\n"+
			"Brings the users and groups of the database in step with the LDAP directory\n"+
			"(Flagsmith's sync_ldap_users_and_groups). Configured by the LDAP_AUTH_* and\n"+
			"LDAP_SYNC_* variables; with LDAP_AUTH_URL unset, syncs the embedded demo directory.\n"+
			"Exit status: 0 done, 1 failed, 2 bad flags or configuration, 3 refused by the removal guard,\n"+
			"4 another sync holds the lease.\n\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.changes, "changes", false, "read only what changed since the last run (OpenLDAP syncprov, Active Directory DirSync; the cookie is kept in the database)")
	fs.DurationVar(&o.poll, "poll", 5*time.Second, "with -watch on Active Directory: how often to ask DirSync for changes")
	fs.BoolVar(&o.watch, "watch", false, "keep running, applying each directory change as it arrives, until SIGTERM")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := checkWatch(o); err != nil {
		fmt.Fprintln(stderr, "syncgroups:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q: syncgroups takes flags only", fs.Arg(0))
		fmt.Fprintln(stderr, "syncgroups:", err)
		return o, err
	}
	if err := checkTextfile(o.textfile); err != nil {
		fmt.Fprintln(stderr, "syncgroups:", err)
		return o, err
	}
	return o, nil
}

// run is the command: it returns the exit status. lookup reads the
// environment (os.LookupEnv).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	fail := func(code int, err error) int {
		fmt.Fprintln(stderr, "syncgroups:", oneLine(err))
		return code
	}
	o, err := parseFlags(args, stderr, lookup)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		return exitUsage
	}

	cfg, dir, err := demo.SetupEnv(lookup)
	if err != nil {
		return fail(exitCode(err), err)
	}
	if dir != nil {
		defer dir.Close()
		fmt.Fprintf(stderr, "syncgroups: LDAP_AUTH_URL is not set: syncing the embedded demo directory (%s)\n", dir.URL())
	}
	if err := cfg.ValidateSync(); err != nil { // before the database is opened, let alone created
		return fail(exitCode(err), err)
	}
	store, err := sqlstore.OpenDSN(ctx, o.db)
	if err != nil {
		return fail(exitFailure, err)
	}
	defer store.Close()
	cfg.Store = store
	auth, err := ldapauth.New(cfg)
	if err != nil {
		return fail(exitCode(err), err)
	}
	defer auth.Close()

	if !o.dryRun { // a dry run writes nothing: it needs no lease
		lease, err := store.AcquireSyncLease(ctx, 0)
		if err != nil {
			return fail(exitCode(err), fmt.Errorf("%w; nothing done", err))
		}
		defer lease.Release()
		ctx = lease.Context()
	}

	syncOpts := ldapauth.SyncOptions{DryRun: o.dryRun, Force: o.force, CreateUsers: o.createUsers}
	if o.watch {
		return watch(ctx, auth, syncOpts, o, stdout, stderr)
	}
	rep, err := syncOnce(ctx, auth, syncOpts, o, stdout, stderr)
	if err != nil {
		return fail(exitCode(err), err)
	}
	if !o.createUsers && rep.StoreUsers == 0 && rep.DirectoryUsers > 0 {
		fmt.Fprintln(stderr, "syncgroups: the database holds no directory user yet: users arrive at their first login; -create-users creates them all now")
	}
	return exitOK
}

// syncOnce runs one sync (with -changes, of what changed), showing its
// progress on stderr, prints its report and writes the -textfile.
func syncOnce(ctx context.Context, auth *ldapauth.Authenticator, syncOpts ldapauth.SyncOptions, o options, stdout, stderr io.Writer) (*ldapauth.SyncReport, error) {
	syncRun := auth.Sync
	if o.changes {
		syncRun = auth.SyncChanges
	}
	var bar *progress
	if !o.quiet {
		bar = newProgress(stderr)
		syncOpts.Progress = bar.update
	}
	start := time.Now()
	rep, err := syncRun(ctx, syncOpts)
	end := time.Now()
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, sqlstore.ErrLeaseLost) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	if bar != nil {
		bar.finish()
	}
	if rep != nil {
		if werr := writeReport(stdout, rep, o.json); werr != nil && err == nil {
			err = fmt.Errorf("write the report: %w", werr)
		}
	}
	if o.textfile != "" {
		code := exitOK
		if err != nil {
			code = exitCode(err)
		}
		if terr := writeTextfile(o.textfile, rep, code, start, end); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	return rep, err
}

// writeReport prints rep for people, or as indented JSON.
func writeReport(w io.Writer, rep *ldapauth.SyncReport, asJSON bool) error {
	if !asJSON {
		return rep.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// exitCode is the exit status for err.
func exitCode(err error) int {
	switch {
	case errors.Is(err, ldapauth.ErrRemovalGuard):
		return exitGuard
	case errors.Is(err, sqlstore.ErrLeaseHeld):
		return exitLease
	case errors.Is(err, ldapauth.ErrConfig):
		return exitUsage
	default:
		return exitFailure
	}
}

// oneLine returns err's message on one line: the lines of joined errors
// (one per bad variable, say) separated by "; ".
func oneLine(err error) string {
	var parts []string
	for line := range strings.Lines(err.Error()) {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}
