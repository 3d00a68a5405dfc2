package main

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/metric"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

//go:embed templates/*.html
var templateFiles embed.FS

var pageTemplate = template.Must(template.ParseFS(templateFiles, "templates/*.html"))

// sessionCookie is the name of the session cookie over plain HTTP;
// secureSessionCookie its name when the site is served over HTTPS: the
// __Host- prefix makes browsers accept it only if it is Secure, has Path=/
// and no Domain, so no other host or plain-HTTP page can plant or overwrite
// it.
const (
	sessionCookie       = "ldapauth_session"
	secureSessionCookie = "__Host-ldapauth_session"
)

// authenticator is what the server needs of *ldapauth.Authenticator.
type authenticator interface {
	Authenticate(ctx context.Context, username, password string) (*ldapauth.User, error)
}

// options configures newServer.
type options struct {
	Auth   authenticator
	Store  *sqlstore.Store
	Logger *slog.Logger
	// Demo, when set, is shown on the login page: the demo directory's
	// accounts and configuration.
	Demo *demoPage
	// SessionTTL is how long a session lasts; zero means eight hours.
	SessionTTL time.Duration
	// MaxSessions caps the sessions of one user (the oldest end first);
	// zero means 10, negative means no cap.
	MaxSessions int
	// PublicURL is the address people use. When its scheme is https the
	// session cookie is Secure with the __Host- prefix, whatever the
	// request came over (TLS ends at a proxy in front). When nil, a request
	// that came over TLS, or through a trusted proxy that says
	// X-Forwarded-Proto: https, gets the Secure cookie.
	PublicURL *url.URL
	// TrustedProxies are the addresses of the reverse proxies or load
	// balancers in front of the server: only from them are
	// X-Forwarded-For and X-Forwarded-Proto believed. None by default.
	TrustedProxies []netip.Prefix
	// DetailedErrors tells a person whose password was right that the
	// account is outside the login group, and a locked account that it is
	// locked. Off by default: both read "Wrong username or password.", so
	// that the page is no oracle for passwords or account states.
	DetailedErrors bool
	// Throttle sets the brute-force limits; the zero value is the defaults.
	Throttle throttleConfig
	// MeterProvider receives the throttling counts (OpenTelemetry); nil
	// records nothing.
	MeterProvider metric.MeterProvider
}

// demoPage describes the demo directory for the login page.
type demoPage struct {
	URL          string
	LoginGroup   string
	SyncedGroups []string
	Accounts     []demo.Account
}

func newDemoPage(srv *ldaptest.Server) *demoPage {
	p := &demoPage{URL: srv.URL(), LoginGroup: srv.GroupDN(demo.LoginGroup), Accounts: demo.Accounts()}
	for _, g := range demo.SyncedGroups {
		p.SyncedGroups = append(p.SyncedGroups, srv.GroupDN(g))
	}
	return p
}

type server struct {
	options
	throttle *throttle
}

// newServer returns the login server's handler: pages, API, health check,
// with cross-origin protection on every unsafe method and a request log.
func newServer(o options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = 10
	}
	s := &server{options: o, throttle: newThrottle(o.Store, o.Throttle.withDefaults(), o.MeterProvider)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("POST /login", s.loginForm)
	mux.HandleFunc("POST /logout", s.logoutForm)
	mux.HandleFunc("POST /api/login", s.apiLogin)
	mux.HandleFunc("GET /api/me", s.apiMe)
	mux.HandleFunc("POST /api/logout", s.apiLogout)
	mux.HandleFunc("GET /healthz", s.health)

	// A POST from another site (a form on evil.example posting to /login or
	// /logout) is refused: browsers say where a request comes from in
	// Sec-Fetch-Site or Origin.
	csrf := http.NewCrossOriginProtection()
	return s.logRequests(securityHeaders(csrf.Handler(mux)))
}

// failure is what a person is told when a login fails: one message per
// error class, never one that tells an unknown user from a wrong password,
// never the error's own text.
type failure struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

// Messages of the failures every refusal may share.
var (
	wrongCredentials = failure{http.StatusUnauthorized, "invalid_credentials", "Wrong username or password."}
	tooManyAttempts  = failure{http.StatusTooManyRequests, "too_many_attempts",
		"Too many failed sign-ins. Wait a few minutes, then try again."}
)

// classify turns a login error into what the person is told. By default a
// refusal says no more than a wrong password does unless the directory only
// reports it after a right password: "outside the login group" and "account
// locked" (OpenLDAP's ppolicy and Active Directory's 775 report a lock with
// a wrong password too) read "Wrong username or password.", so that the
// page tells an attacker nothing about a password or an account. detailed
// gives them their own messages.
func classify(err error, detailed bool) failure {
	// The account states come first: each also matches ErrInvalidCredentials.
	switch {
	// Active Directory reports 532, 773, 533, 701, 530 and 531 only to a
	// bind with the right password; ppolicy's must-change likewise.
	case errors.Is(err, ldapauth.ErrPasswordExpired):
		return failure{http.StatusUnauthorized, "password_expired", "Your password has expired. Change it, then sign in again."}
	case errors.Is(err, ldapauth.ErrPasswordMustChange):
		return failure{http.StatusUnauthorized, "password_must_change", "You must change your password before you can sign in."}
	case errors.Is(err, ldapauth.ErrAccountDisabled), errors.Is(err, ldapauth.ErrAccountExpired):
		return failure{http.StatusUnauthorized, "account_disabled", "Your account is disabled or has expired. Ask an administrator."}
	case errors.Is(err, ldapauth.ErrLogonNotPermitted):
		return failure{http.StatusUnauthorized, "logon_not_permitted", "Your account may not sign in at this time or from this computer."}
	case errors.Is(err, ldapauth.ErrAccountLocked):
		if detailed {
			return failure{http.StatusUnauthorized, "account_locked", "Your account is locked after too many failed sign-ins. Try again later or ask an administrator."}
		}
		return wrongCredentials
	case errors.Is(err, ldapauth.ErrInvalidCredentials): // ErrUnknownUser matches it too
		return wrongCredentials
	case errors.Is(err, ldapauth.ErrNotPermitted):
		if detailed {
			return failure{http.StatusForbidden, "not_permitted",
				"Your account may not sign in to this application: it is not in the sign-in group. Ask an administrator for access."}
		}
		return wrongCredentials
	case errors.Is(err, ldapauth.ErrUnavailable):
		return failure{http.StatusServiceUnavailable, "directory_unavailable",
			"The directory cannot be reached right now. Please try again in a few minutes."}
	default:
		return failure{http.StatusInternalServerError, "internal_error",
			"Sign-in failed because of a problem on our side. Please try again later, or tell an administrator."}
	}
}

// passwordWasRight reports whether the directory accepted the password
// before refusing the login: it does not count as a failed attempt.
func passwordWasRight(err error) bool {
	return errors.Is(err, ldapauth.ErrNotPermitted) || errors.Is(err, ldapauth.ErrPasswordExpired) ||
		errors.Is(err, ldapauth.ErrPasswordMustChange) || errors.Is(err, ldapauth.ErrAccountDisabled) ||
		errors.Is(err, ldapauth.ErrAccountExpired) || errors.Is(err, ldapauth.ErrLogonNotPermitted)
}

// directoryKnowsUser reports whether the error says the directory holds an
// account by that name: only then is the typed name logged in full.
func directoryKnowsUser(err error) bool {
	return passwordWasRight(err) || errors.Is(err, ldapauth.ErrAccountLocked)
}

// login checks the throttle and the credentials and starts a session. On
// failure it logs why and returns what the person is told, and for a
// throttled attempt how long to wait.
func (s *server) login(w http.ResponseWriter, r *http.Request, username, password string) (*ldapauth.User, *failure, time.Duration) {
	ctx := r.Context()
	client := s.clientAddr(r)
	if username == "" || password == "" {
		// Refused by ldapauth before any network I/O: nothing for the
		// directory to count, so nothing for the throttle either.
		s.Logger.LogAttrs(ctx, slog.LevelWarn, "login refused", logName(username, false), slog.String("client", client),
			slog.String("reason", "empty username or password"))
		f := wrongCredentials
		return nil, &f, 0
	}
	att, wait, err := s.throttle.begin(ctx, username, client)
	if err != nil {
		s.Logger.LogAttrs(ctx, slog.LevelError, "throttle", slog.Any("err", err))
		f := classify(err, false)
		return nil, &f, 0
	}
	if wait > 0 {
		s.Logger.LogAttrs(ctx, slog.LevelWarn, "login throttled", logName(username, false),
			slog.String("client", client), slog.String("limit", att.refusedBy), slog.Duration("retry_after", wait))
		f := tooManyAttempts
		return nil, &f, wait
	}
	u, err := s.Auth.Authenticate(ctx, username, password)
	if endErr := s.throttle.end(context.WithoutCancel(ctx), att, err, u); endErr != nil {
		s.Logger.LogAttrs(ctx, slog.LevelError, "throttle", slog.Any("err", endErr))
	}
	if err != nil {
		f := classify(err, s.DetailedErrors)
		level := slog.LevelWarn
		if f.Status == http.StatusInternalServerError {
			level = slog.LevelError
		}
		attrs := []slog.Attr{logName(username, directoryKnowsUser(err)), slog.String("client", client), slog.String("reason", reason(err))}
		if directoryKnowsUser(err) || f.Status >= http.StatusInternalServerError {
			// The error text names the bind name tried: it holds the typed
			// username, logged in full only for an account the directory has.
			attrs = append(attrs, slog.Any("err", err))
		}
		s.Logger.LogAttrs(ctx, level, "login refused", attrs...)
		return nil, &f, 0
	}
	var previous string
	if c, err := r.Cookie(s.cookieName(r)); err == nil {
		previous = c.Value // this browser's session ends: a fresh ID for a fresh login
	}
	id, err := s.Store.CreateSession(ctx, u.Username, s.SessionTTL, max(s.MaxSessions, 0), previous)
	if err != nil {
		s.Logger.ErrorContext(ctx, "create session", "err", err)
		f := classify(err, false)
		return nil, &f, 0
	}
	http.SetCookie(w, s.cookie(r, id, int(s.SessionTTL/time.Second)))
	s.Logger.LogAttrs(ctx, slog.LevelInfo, "login", logName(u.Username, true), slog.String("dn", u.DN), slog.String("client", client))
	return u, nil, 0
}

// reason names the kind of a login error for the log, without its text.
func reason(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{ldapauth.ErrPasswordExpired, "password expired"}, {ldapauth.ErrPasswordMustChange, "password must change"},
		{ldapauth.ErrAccountDisabled, "account disabled"}, {ldapauth.ErrAccountExpired, "account expired"},
		{ldapauth.ErrLogonNotPermitted, "logon not permitted"}, {ldapauth.ErrAccountLocked, "account locked"},
		{ldapauth.ErrUnknownUser, "unknown user"}, {ldapauth.ErrInvalidCredentials, "invalid credentials"},
		{ldapauth.ErrNotPermitted, "not permitted (outside the login group)"}, {ldapauth.ErrUnavailable, "directory unavailable"},
		{context.Canceled, "cancelled"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "error"
}

// maxLoggedName bounds a username in the logs.
const maxLoggedName = 64

// logName is the username attribute of a log record. People type passwords
// into the username field: a name the directory did not confirm is logged
// as its first two characters, its length and a short hash (an
// administrator can compute it for a name they suspect), never in full. A
// confirmed name is logged with control and invisible characters replaced,
// at most 64 characters.
func logName(name string, confirmed bool) slog.Attr {
	clean := []rune(strings.Map(func(r rune) rune {
		if !strconv.IsGraphic(r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, name))
	if confirmed {
		if len(clean) > maxLoggedName {
			clean = append(clean[:maxLoggedName], '…')
		}
		return slog.String("username", string(clean))
	}
	prefix := clean[:min(2, len(clean))]
	sum := sha256.Sum256([]byte(strings.ToLower(name)))
	return slog.Group("username",
		slog.String("prefix", string(prefix)),
		slog.Int("length", len(clean)),
		slog.String("sha256_prefix", hex.EncodeToString(sum[:4])))
}

// cookieName is the session cookie's name for the request: prefixed when
// the site is served over HTTPS.
func (s *server) cookieName(r *http.Request) string {
	if s.secure(r) {
		return secureSessionCookie
	}
	return sessionCookie
}

// secure reports whether people reach the site over HTTPS.
func (s *server) secure(r *http.Request) bool {
	if s.PublicURL != nil {
		return s.PublicURL.Scheme == "https"
	}
	if r.TLS != nil {
		return true
	}
	return s.fromTrustedProxy(r) && strings.EqualFold(strings.TrimSpace(lastValue(r.Header.Values("X-Forwarded-Proto"))), "https")
}

func (s *server) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: s.cookieName(r), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r)}
}

// logout ends the request's session, if any, on every replica, and clears
// the cookie.
func (s *server) logout(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(s.cookieName(r)); err == nil {
		if err := s.Store.DeleteSession(r.Context(), c.Value); err != nil {
			return err
		}
	}
	http.SetCookie(w, s.cookie(r, "", -1))
	return nil
}

// current returns the signed-in user's account as the database holds it,
// or nil. A session that expired, ended, or whose user the database no
// longer holds (the sync job removed it) clears the cookie.
func (s *server) current(w http.ResponseWriter, r *http.Request) (*sqlstore.Account, error) {
	c, err := r.Cookie(s.cookieName(r))
	if err != nil {
		return nil, nil
	}
	username, err := s.Store.SessionUser(r.Context(), c.Value)
	if errors.Is(err, sqlstore.ErrNoSession) {
		http.SetCookie(w, s.cookie(r, "", -1))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a, err := s.Store.User(r.Context(), username)
	if errors.Is(err, sqlstore.ErrNoSuchUser) {
		return nil, s.logout(w, r)
	}
	return a, err
}

// pageData fills templates/page.html.
type pageData struct {
	Account  *sqlstore.Account
	Fields   []field
	Error    *failure
	Username string // typed into the form, shown again after a failure; never the password
	Demo     *demoPage
}

type field struct{ Name, Value string }

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	if d.Account != nil {
		for _, k := range slices.Sorted(maps.Keys(d.Account.Fields)) {
			d.Fields = append(d.Fields, field{k, d.Account.Fields[k]})
		}
	} else {
		d.Demo = s.Demo
	}
	var b strings.Builder
	if err := pageTemplate.ExecuteTemplate(&b, "page.html", d); err != nil {
		s.internalError(w, r, "render page", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (s *server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.Logger.ErrorContext(r.Context(), what, "err", err)
	http.Error(w, "Internal server error", http.StatusInternalServerError)
}

func (s *server) home(w http.ResponseWriter, r *http.Request) {
	a, err := s.current(w, r)
	if err != nil {
		s.internalError(w, r, "read user", err)
		return
	}
	s.render(w, r, http.StatusOK, pageData{Account: a})
}

// maxBody bounds request bodies: a login is a few hundred bytes.
const maxBody = 64 << 10

func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad request", http.StatusBadRequest)
		return
	}
	username := r.PostForm.Get("username")
	if _, f, wait := s.login(w, r, username, r.PostForm.Get("password")); f != nil {
		setRetryAfter(w, wait)
		s.render(w, r, f.Status, pageData{Error: f, Username: username})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// setRetryAfter says, in whole seconds rounded up, when to try again.
func setRetryAfter(w http.ResponseWriter, wait time.Duration) {
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	}
}

func (s *server) logoutForm(w http.ResponseWriter, r *http.Request) {
	if err := s.logout(w, r); err != nil {
		s.internalError(w, r, "logout", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// apiUser is the JSON of a signed-in user.
type apiUser struct {
	Username      string            `json:"username"`
	DN            string            `json:"dn"`
	Fields        map[string]string `json:"fields"`
	Organisations []string          `json:"organisations"`
	Groups        []ldapauth.Group  `json:"groups"`
}

func toAPI(a *sqlstore.Account) apiUser {
	u := apiUser{Username: a.Username, DN: a.DN, Fields: a.Fields, Organisations: a.Organisations, Groups: a.Groups}
	if u.Organisations == nil {
		u.Organisations = []string{}
	}
	if u.Groups == nil {
		u.Groups = []ldapauth.Group{}
	}
	return u
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) apiLogin(w http.ResponseWriter, r *http.Request) {
	// JSON only: a cross-site HTML form cannot send this content type.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, failure{Code: "bad_request", Message: "Send JSON: Content-Type: application/json."})
		return
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, failure{Code: "bad_request", Message: `Send {"username": "...", "password": "..."}.`})
		return
	}
	u, f, wait := s.login(w, r, req.Username, req.Password)
	if f != nil {
		setRetryAfter(w, wait)
		writeJSON(w, f.Status, f)
		return
	}
	a, err := s.Store.User(r.Context(), u.Username)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "read user", "err", err)
		f := classify(err, false)
		writeJSON(w, f.Status, f)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": toAPI(a)})
}

func (s *server) apiMe(w http.ResponseWriter, r *http.Request) {
	a, err := s.current(w, r)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "read user", "err", err)
		f := classify(err, false)
		writeJSON(w, f.Status, f)
		return
	}
	if a == nil {
		writeJSON(w, http.StatusUnauthorized, failure{Code: "not_signed_in", Message: "Not signed in."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": toAPI(a)})
}

func (s *server) apiLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.logout(w, r); err != nil {
		s.Logger.ErrorContext(r.Context(), "logout", "err", err)
		f := classify(err, false)
		writeJSON(w, f.Status, f)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// health answers 200 while the database answers.
func (s *server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		s.Logger.ErrorContext(r.Context(), "health", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// securityHeaders keeps pages out of frames, caches and other sites'
// scripts. The pages have no script at all.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests writes one log record per request.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		s.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status), slog.Int("bytes", sw.bytes),
			slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr), slog.String("client", s.clientAddr(r)))
	})
}
