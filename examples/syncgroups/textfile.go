package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldapauth/ldapauth"
)

// checkTextfile reports a -textfile path node_exporter's textfile
// collector would not read.
func checkTextfile(path string) error {
	if path != "" && !strings.HasSuffix(path, ".prom") {
		return fmt.Errorf("-textfile %q: the name must end in .prom, the only files node_exporter's textfile collector reads", path)
	}
	return nil
}

// writeTextfile writes the run's numbers as Prometheus metrics to path, the
// node_exporter textfile-collector convention: written to a temporary file
// in the same directory, then renamed over path, so a scrape never reads a
// half-written file. rep may be nil (the run failed before planning);
// code is the command's exit status.
func writeTextfile(path string, rep *ldapauth.SyncReport, code int, start, end time.Time) error {
	var b strings.Builder
	gauge := func(name, help string, value float64, labels ...string) {
		if !strings.Contains(b.String(), "# TYPE "+name+" ") {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		}
		b.WriteString(name)
		if len(labels) > 0 {
			b.WriteString("{")
			for i := 0; i+1 < len(labels); i += 2 {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
			}
			b.WriteString("}")
		}
		fmt.Fprintf(&b, " %s\n", strconv.FormatFloat(value, 'f', -1, 64))
	}
	bit := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge("ldapauth_sync_last_run_timestamp_seconds", "When the last sync run ended, in Unix seconds.", float64(end.UnixMilli())/1000)
	gauge("ldapauth_sync_duration_seconds", "How long the last sync run took.", end.Sub(start).Seconds())
	gauge("ldapauth_sync_exit_code", "The last run's exit status: 0 done, 1 failed, 2 bad flags or configuration, 3 refused by the removal guard.", float64(code))
	gauge("ldapauth_sync_success", "1 if the last run synced (or planned, with -dry-run), 0 if it failed or was refused.", bit(code == exitOK))
	if rep != nil {
		gauge("ldapauth_sync_dry_run", "1 if the last run was a dry run.", bit(rep.DryRun))
		gauge("ldapauth_sync_applied", "1 if the last run wrote every change it planned.", bit(rep.Applied))
		gauge("ldapauth_sync_pages", "Pages of users the last run read.", float64(rep.Pages))
		gauge("ldapauth_sync_directory_users", "Directory users the last run read.", float64(rep.DirectoryUsers))
		gauge("ldapauth_sync_store_users", "Directory-managed users in the store before the last run.", float64(rep.StoreUsers))
		for _, ch := range []struct {
			name string
			n    int
		}{
			{"users_removed", len(rep.UsersRemoved)}, {"users_updated", len(rep.UsersUpdated)}, {"users_created", len(rep.UsersCreated)},
			{"organisation_joins", len(rep.OrganisationJoins)}, {"groups_created", len(rep.GroupsCreated)}, {"groups_removed", len(rep.GroupsRemoved)},
			{"memberships_added", len(rep.MembershipsAdded)}, {"memberships_removed", len(rep.MembershipsRemoved)},
		} {
			gauge("ldapauth_sync_changes", "Changes of the last run by kind: written when applied, planned otherwise.", float64(ch.n), "change", ch.name)
		}
		gauge("ldapauth_sync_groups_left_alone", "Store groups the last run left alone.", float64(len(rep.GroupsLeftAlone)))
		gauge("ldapauth_sync_skipped_entries", "Directory entries the last run could not use.", float64(len(rep.Skipped)))
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp") // not *.prom: the collector skips it
	if err != nil {
		return fmt.Errorf("-textfile: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing to remove
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("-textfile: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil { // the collector may run as another user
		tmp.Close()
		return fmt.Errorf("-textfile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("-textfile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("-textfile: %w", err)
	}
	return nil
}
