package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-ldapauth/ldapauth"
)

// checkWatch refuses the flags -watch does not go with.
func checkWatch(o options) error {
	switch {
	case !o.watch:
		return nil
	case o.dryRun:
		return errors.New("-watch applies changes: it cannot be a -dry-run")
	case o.textfile != "":
		return errors.New("-watch runs for ever: -textfile is for runs that end")
	case o.poll <= 0:
		return errors.New("-poll must be a positive duration, such as 5s")
	}
	return nil
}

// watch is -watch: it applies each directory change as it arrives until ctx
// ends (SIGTERM, Ctrl-C), printing the report of every run that changed
// something (or failed) to stdout, and a line per lost connection to
// stderr. It returns exitOK when stopped, exitFailure when the directory
// offers no content synchronisation.
func watch(ctx context.Context, auth *ldapauth.Authenticator, syncOpts ldapauth.SyncOptions, o options, stdout, stderr io.Writer) int {
	runs := 0
	report := func(rep *ldapauth.SyncReport, err error) {
		now := time.Now().UTC().Format(time.RFC3339)
		if rep == nil {
			fmt.Fprintf(stderr, "syncgroups: %s: connection lost, reconnecting: %s\n", now, oneLine(err))
			return
		}
		runs++
		if err == nil && rep.Changes() == 0 && rep.ChangeSync.Fallback == "" {
			if !o.quiet {
				fmt.Fprintf(stderr, "syncgroups: %s: run %d: no change to apply\n", now, runs)
			}
			return
		}
		if !o.quiet {
			fmt.Fprintf(stderr, "syncgroups: %s: run %d: %d changes\n", now, runs, rep.Changes())
		}
		if werr := writeReport(stdout, rep, o.json); werr != nil {
			fmt.Fprintln(stderr, "syncgroups: write the report:", werr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "syncgroups: %s: run %d: %s\n", now, runs, oneLine(err))
		}
	}
	if !o.quiet {
		fmt.Fprintln(stderr, "syncgroups: watching the directory for changes (SIGTERM to stop)")
	}
	err := auth.WatchChanges(ctx, ldapauth.WatchOptions{SyncOptions: syncOpts, Report: report, PollInterval: o.poll})
	if err != nil {
		fmt.Fprintln(stderr, "syncgroups:", oneLine(err))
		return exitCode(err)
	}
	if !o.quiet {
		fmt.Fprintf(stderr, "syncgroups: stopped after %d runs\n", runs)
	}
	return exitOK
}
