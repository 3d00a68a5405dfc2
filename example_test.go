package ldapauth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// A Flagsmith deployment's environment, read as Flagsmith reads it. With
// LDAP_AUTH_URL unset, LDAP login is off, and the application carries on
// without it.
func ExampleConfigFromEnv() {
	env := map[string]string{
		"LDAP_AUTH_URL":                          "ldap://ldap.example.com:389",
		"LDAP_AUTH_USE_TLS":                      "True",
		"LDAP_AUTH_SEARCH_BASE":                  "ou=people,dc=example,dc=com",
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS":        "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                       "cn=ldapusers,ou=groups,dc=example,dc=com",
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     "cn=readers,ou=groups,dc=example,dc=com:cn=marvel,ou=groups,dc=example,dc=com",
	}
	for k, v := range env { // in a real program, the deployment sets these
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}

	if os.Getenv("LDAP_AUTH_URL") == "" {
		fmt.Println("LDAP login is off")
		return
	}
	cfg, err := ldapauth.ConfigFromEnv()
	if err != nil {
		log.Fatal(err) // every bad variable, one line each
	}
	fmt.Println("servers:", cfg.URLs, "StartTLS:", cfg.UseTLS)
	fmt.Println("users under", cfg.SearchBase, "of class", cfg.ObjectClass)
	fmt.Println("login group:", cfg.LoginGroup)
	fmt.Println("synced groups:", strings.Join(cfg.SyncedGroups, " and "))
	fmt.Println("login search filters from:", cfg.SearchFilters)
	// Output:
	// servers: [ldap://ldap.example.com:389] StartTLS: true
	// users under ou=people,dc=example,dc=com of class inetOrgPerson
	// login group: cn=ldapusers,ou=groups,dc=example,dc=com
	// synced groups: cn=readers,ou=groups,dc=example,dc=com and cn=marvel,ou=groups,dc=example,dc=com
	// login search filters from: flagsmith_ldap.ldap.login_group_search_filter
}

// A configuration built in code goes through the same validation as one read
// from the environment; New reports every problem at once.
func ExampleNew() {
	auth, err := ldapauth.New(&ldapauth.Config{
		URLs:           []string{"ldaps://ldap.example.com"},
		SearchBase:     "ou=people,dc=example,dc=com",
		SearchFilters:  ldapauth.LoginGroupFilters{},
		LoginGroup:     "cn=ldapusers,ou=groups,dc=example,dc=com",
		SyncRelations:  ldapauth.SyncUserGroups{},
		OrganisationID: "1",
		SyncedGroups:   []string{"cn=readers,ou=groups,dc=example,dc=com"},
		Store:          ldapauth.NewMemStore(), // your database in a real program
	})
	if err != nil {
		log.Fatal(err)
	}
	defer auth.Close()
	fmt.Println("ready") // New does no network I/O: logins connect

	_, err = ldapauth.New(&ldapauth.Config{URLs: []string{"http://ldap.example.com"}})
	fmt.Println(errors.Is(err, ldapauth.ErrConfig))
	// Output:
	// ready
	// true
}

// Logging users in against the in-process demo directory, and telling the
// person what went wrong without telling an unknown user from a wrong
// password.
func ExampleAuthenticator_Authenticate() {
	dir, err := ldaptest.NewServer(ldaptest.DemoDirectory())
	if err != nil {
		log.Fatal(err)
	}
	defer dir.Close()
	env := dir.Env()
	env["LDAP_AUTH_FORMAT_SEARCH_FILTERS"] = "flagsmith_ldap.ldap.login_group_search_filter"
	env["LDAP_LOGIN_GROUP"] = dir.GroupDN("ldapusers")
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		log.Fatal(err)
	}
	auth, err := ldapauth.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer auth.Close()

	for _, try := range []struct{ user, password string }{
		{"alice", "alice-password"},
		{"alice", "wrong"},
		{"nobody", "wrong"},
		{"bob", "bob-password"}, // right password, outside the login group
	} {
		u, err := auth.Authenticate(context.Background(), try.user, try.password)
		switch {
		case err == nil:
			fmt.Printf("%s: welcome, %s %s\n", try.user, u.Fields["first_name"], u.Fields["last_name"])
		case errors.Is(err, ldapauth.ErrInvalidCredentials): // ErrUnknownUser too
			fmt.Printf("%s: wrong username or password\n", try.user)
		case errors.Is(err, ldapauth.ErrNotPermitted):
			fmt.Printf("%s: you may not sign in here\n", try.user)
		case errors.Is(err, ldapauth.ErrUnavailable):
			fmt.Printf("%s: the directory is unavailable, try again later\n", try.user)
		case errors.Is(err, ldapauth.ErrServiceAccount), errors.Is(err, ldapauth.ErrConfig):
			fmt.Printf("%s: the server is misconfigured, tell an administrator\n", try.user)
		default:
			fmt.Printf("%s: sign-in failed\n", try.user)
		}
		// The error itself is for the logs: it names the bind name tried,
		// never the password.
	}

	dir.Close() // the directory goes away
	_, err = auth.Authenticate(context.Background(), "alice", "alice-password")
	fmt.Println("unavailable:", errors.Is(err, ldapauth.ErrUnavailable))
	// Output:
	// alice: welcome, Alice Liddell
	// alice: wrong username or password
	// nobody: wrong username or password
	// bob: you may not sign in here
	// unavailable: true
}

// A username formatter of your own: here users log in with the local part of
// their mail address and bind with all of it.
func ExampleUsernameFormatterFunc() {
	cfg := &ldapauth.Config{
		URLs: []string{"ldap://ldap.example.com"},
		FormatUsername: ldapauth.UsernameFormatterFunc(func(cfg *ldapauth.Config, username string) (string, error) {
			if strings.ContainsAny(username, "@,=") {
				return "", fmt.Errorf("%q is not a plain username", username)
			}
			return username + "@" + cfg.ActiveDirectoryDomain, nil
		}),
		ActiveDirectoryDomain: "example.com",
	}
	bindName, err := cfg.FormatUsername.FormatUsername(cfg, "jdoe")
	fmt.Println(bindName, err)
	_, err = cfg.FormatUsername.FormatUsername(cfg, "jdoe@evil.example")
	fmt.Println(err)
	// Output:
	// jdoe@example.com <nil>
	// "jdoe@evil.example" is not a plain username
}

// Testing your own login handler against a real directory on loopback. In
// your package this is a Test function: ldaptest.Start(t, ...) starts the
// directory and closes it when the test ends, and t.Setenv points the
// environment at it for code that calls ConfigFromEnv.
func Example_handlerTest() {
	dir, err := ldaptest.NewServer(ldaptest.DemoDirectory()) // ldaptest.Start(t, ...) in a test
	if err != nil {
		log.Fatal(err)
	}
	defer dir.Close()
	env := dir.Env()
	env["LDAP_AUTH_FORMAT_SEARCH_FILTERS"] = "flagsmith_ldap.ldap.login_group_search_filter"
	env["LDAP_LOGIN_GROUP"] = dir.GroupDN("ldapusers")
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		log.Fatal(err)
	}
	auth, err := ldapauth.New(cfg)
	if err != nil {
		log.Fatal(err)
	}

	// The handler under test: yours.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := auth.Authenticate(r.Context(), r.PostFormValue("username"), r.PostFormValue("password"))
		switch {
		case errors.Is(err, ldapauth.ErrInvalidCredentials):
			http.Error(w, "wrong username or password", http.StatusUnauthorized)
		case errors.Is(err, ldapauth.ErrNotPermitted):
			http.Error(w, "not permitted", http.StatusForbidden)
		case err != nil:
			http.Error(w, "sign-in failed", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})

	for _, c := range [][2]string{{"alice", "alice-password"}, {"alice", "bob-password"}, {"bob", "bob-password"}} {
		form := url.Values{"username": {c[0]}, "password": {c[1]}}
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(c[0], rec.Code) // assert.Equal(t, http.StatusNoContent, rec.Code) in a test
	}
	// Output:
	// alice 204
	// alice 401
	// bob 403
}
