// Command quickstart logs one user in with ldapauth and prints what the
// store holds afterwards: the user, the mapped fields and the synced groups.
//
// Without LDAP_AUTH_URL it starts an embedded demo directory (GLAuth, on
// 127.0.0.1) configured as a Flagsmith deployment with a login group and two
// synced groups, and logs in a demo user:
//
//	go run ./examples/quickstart                 # alice, the demo password
//	go run ./examples/quickstart -user bob       # outside the login group
//
// With LDAP_AUTH_URL set, it reads the LDAP_AUTH_* variables like Flagsmith
// and asks for the password without echoing it:
//
//	LDAP_AUTH_URL=ldap://ldap.example.com LDAP_AUTH_USE_TLS=true go run ./examples/quickstart -user jdoe
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

func main() {
	user := flag.String("user", "", "username to log in (demo default: alice)")
	password := flag.String("password", "", "password (demo mode only; otherwise it is asked for)")
	flag.Parse()
	if err := run(*user, *password); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(user, password string) error {
	cfg, srv, err := demo.Setup()
	if err != nil {
		return err
	}
	if srv != nil {
		defer srv.Close()
		printDemo(srv)
		if user == "" {
			user = "alice"
		}
		if password == "" {
			password, _ = demo.Password(user)
		}
	} else {
		if user == "" {
			return errors.New("-user is required with a real directory")
		}
		if password != "" {
			return errors.New("-password is for the demo directory only: the password is asked for")
		}
		if password, err = readPassword(user); err != nil {
			return err
		}
	}

	store := ldapauth.NewMemStore()
	cfg.Store = store
	auth, err := ldapauth.New(cfg)
	if err != nil {
		return err
	}
	defer auth.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := auth.Authenticate(ctx, user, password)
	switch {
	case errors.Is(err, ldapauth.ErrInvalidCredentials):
		return fmt.Errorf("login refused: wrong username or password (%w)", err)
	case errors.Is(err, ldapauth.ErrNotPermitted):
		return fmt.Errorf("login refused: %s is not in the login group (%w)", user, err)
	case errors.Is(err, ldapauth.ErrUnavailable):
		return fmt.Errorf("the directory is unavailable: %w", err)
	case err != nil:
		return err
	}

	fmt.Printf("logged in: %s\n  dn: %s\n", u.Username, u.DN)
	for stored, err := range store.Users(ctx) {
		if err != nil {
			return err
		}
		if !strings.EqualFold(stored.Username, u.Username) {
			continue
		}
		for _, field := range []string{"first_name", "last_name", "email"} {
			fmt.Printf("  %s: %s\n", field, stored.Fields[field])
		}
		fmt.Printf("  organisations: %s\n", strings.Join(stored.Organisations, ", "))
	}
	fmt.Println("  synced groups in the store:")
	groups := 0
	for g, err := range store.Groups(ctx) {
		if err != nil {
			return err
		}
		groups++
		fmt.Printf("    %s (%s): %s\n", g.Name, g.DN, strings.Join(g.Members, ", "))
	}
	if groups == 0 {
		fmt.Println("    (none)")
	}
	return nil
}

// printDemo tells what the demo directory holds.
func printDemo(srv *ldaptest.Server) {
	fmt.Println("No LDAP_AUTH_URL: using the embedded demo directory at", srv.URL())
	fmt.Println("Demo users (password <name>-password):")
	for _, a := range demo.Accounts() {
		fmt.Printf("  %-10s groups: %s\n", a.Name, strings.Join(a.Groups, ", "))
	}
	fmt.Printf("Login group: %s; synced groups: %s\n", demo.LoginGroup, strings.Join(demo.SyncedGroups, ", "))
	fmt.Println()
}

// readPassword asks for the password without echo on a terminal, or reads
// one line from standard input otherwise.
func readPassword(user string) (string, error) {
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprintf(os.Stderr, "Password for %s: ", user)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return string(b), err
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
