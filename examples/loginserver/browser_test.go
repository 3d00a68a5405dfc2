package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireChromiumEnv turns a missing Chromium into a failure (CI sets it).
const requireChromiumEnv = "LDAPAUTH_REQUIRE_CHROMIUM"

// chromiumPath finds headless Chromium, or skips the test (fails it under
// LDAPAUTH_REQUIRE_CHROMIUM=1) saying how to install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed (Debian: apt-get install chromium)"
	if os.Getenv(requireChromiumEnv) == "1" {
		t.Fatalf("%s; %s=1 requires it", msg, requireChromiumEnv)
	}
	t.Skipf("%s; CI sets %s=1 to fail instead of skipping", msg, requireChromiumEnv)
	return ""
}

// TestBrowser drives headless Chromium through the login page as a person
// would: sign in as the demo user, see the profile, sign out; a wrong
// password shows the error; a user outside the login group sees the same
// generic message. A screenshot of each state is saved in the test's
// artifact directory (kept with go test -artifacts, else a temporary one).
func TestBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	e := start(t, httptest.NewServer)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true), // the test server is on 127.0.0.1: nothing else is reached
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 1200),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()

	shots := t.ArtifactDir()
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(shots, name), png, 0o644))
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		require.NoError(t, err)
		return v
	}
	signIn := func(user, password string) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(e.srv.URL+"/"),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), user),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
		))
	}

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("username"))))
	screenshot("1-login-page.png")
	signIn("alice", "alice-password")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("groups"))))
	screenshot("2-profile.png")
	assert.Contains(t, text("h1"), "Signed in as Alice Liddell")
	assert.Contains(t, text("#groups"), "readers", "the synced group, read back from the database")
	title, err := chromedp.Run(ctx, chromedp.Title())
	require.NoError(t, err)
	assert.Contains(t, title, "Signed in as alice")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
		chromedp.WaitVisible(chromedp.ID("username")),
	))
	screenshot("3-signed-out.png")
	assert.Equal(t, "Sign in", text("h1"))
	n, err := e.store.Sessions(t.Context(), "alice")
	require.NoError(t, err)
	assert.Zero(t, n, "signing out ended the session")

	signIn("alice", "not-her-password")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("error"))))
	screenshot("4-wrong-password.png")
	wrong := text("#error")
	assert.Equal(t, "Wrong username or password.", wrong)
	kept, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("username")))
	require.NoError(t, err)
	assert.Equal(t, "alice", kept, "the username stays in the form")

	signIn("bob", "bob-password")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("error"))))
	screenshot("5-outside-login-group.png")
	assert.Equal(t, wrong, text("#error"), "outside the login group: the same generic message")
	assert.Equal(t, "bob", func() string { v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("username"))); return v }(),
		"this is bob's refusal, not the previous page")

	for _, name := range []string{"1-login-page.png", "2-profile.png", "3-signed-out.png", "4-wrong-password.png", "5-outside-login-group.png"} {
		fi, err := os.Stat(filepath.Join(shots, name))
		if assert.NoError(t, err) {
			assert.Positive(t, fi.Size(), name)
		}
	}
	t.Logf("screenshots in %s", shots)
}
