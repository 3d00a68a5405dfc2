package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

//go:embed templates/*.html
var templateFiles embed.FS

var pageTemplate = template.Must(template.ParseFS(templateFiles, "templates/*.html"))

// sessionCookie is the name of the session cookie.
const sessionCookie = "ldapauth_session"

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
	sessions *sessions
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
	s := &server{options: o, sessions: &sessions{m: map[string]session{}}}
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

func classify(err error) failure {
	// The account states come first: each also matches ErrInvalidCredentials.
	// Directories report them only once the password was right (a locked
	// account is the exception on Active Directory), so they reveal nothing
	// to someone guessing passwords that the directory does not already say.
	switch {
	case errors.Is(err, ldapauth.ErrPasswordExpired):
		return failure{http.StatusUnauthorized, "password_expired", "Your password has expired. Change it, then sign in again."}
	case errors.Is(err, ldapauth.ErrPasswordMustChange):
		return failure{http.StatusUnauthorized, "password_must_change", "You must change your password before you can sign in."}
	case errors.Is(err, ldapauth.ErrAccountLocked):
		return failure{http.StatusUnauthorized, "account_locked", "Your account is locked after too many failed sign-ins. Try again later or ask an administrator."}
	case errors.Is(err, ldapauth.ErrAccountDisabled), errors.Is(err, ldapauth.ErrAccountExpired):
		return failure{http.StatusUnauthorized, "account_disabled", "Your account is disabled or has expired. Ask an administrator."}
	case errors.Is(err, ldapauth.ErrLogonNotPermitted):
		return failure{http.StatusUnauthorized, "logon_not_permitted", "Your account may not sign in at this time or from this computer."}
	case errors.Is(err, ldapauth.ErrInvalidCredentials): // ErrUnknownUser matches it too
		return failure{http.StatusUnauthorized, "invalid_credentials", "Wrong username or password."}
	case errors.Is(err, ldapauth.ErrNotPermitted):
		return failure{http.StatusForbidden, "not_permitted",
			"Your account may not sign in to this application: it is not in the sign-in group. Ask an administrator for access."}
	case errors.Is(err, ldapauth.ErrUnavailable):
		return failure{http.StatusServiceUnavailable, "directory_unavailable",
			"The directory cannot be reached right now. Please try again in a few minutes."}
	default:
		return failure{http.StatusInternalServerError, "internal_error",
			"Sign-in failed because of a problem on our side. Please try again later, or tell an administrator."}
	}
}

// login checks the credentials and starts a session. On failure it logs
// why (the error names the bind name tried, never the password) and
// returns what the person is told.
func (s *server) login(w http.ResponseWriter, r *http.Request, username, password string) (*ldapauth.User, *failure) {
	u, err := s.Auth.Authenticate(r.Context(), username, password)
	if err != nil {
		f := classify(err)
		level := slog.LevelWarn
		if f.Status == http.StatusInternalServerError {
			level = slog.LevelError
		}
		s.Logger.LogAttrs(r.Context(), level, "login refused", slog.String("username", username),
			slog.String("class", f.Code), slog.Any("err", err))
		return nil, &f
	}
	id, err := s.sessions.create(u.Username, s.SessionTTL)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "create session", "err", err)
		f := classify(err)
		return nil, &f
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		MaxAge: int(s.SessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
	s.Logger.LogAttrs(r.Context(), slog.LevelInfo, "login", slog.String("username", u.Username), slog.String("dn", u.DN))
	return u, nil
}

// logout ends the request's session, if any, and clears the cookie.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.delete(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
}

// current returns the signed-in user's account as the database holds it,
// or nil. A session whose user the database no longer holds (the sync job
// removed it) ends.
func (s *server) current(w http.ResponseWriter, r *http.Request) (*sqlstore.Account, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	username, ok := s.sessions.get(c.Value)
	if !ok {
		return nil, nil
	}
	a, err := s.Store.User(r.Context(), username)
	if errors.Is(err, sqlstore.ErrNoSuchUser) {
		s.logout(w, r)
		return nil, nil
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
	if _, f := s.login(w, r, username, r.PostForm.Get("password")); f != nil {
		s.render(w, r, f.Status, pageData{Error: f, Username: username})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) logoutForm(w http.ResponseWriter, r *http.Request) {
	s.logout(w, r)
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
	u, f := s.login(w, r, req.Username, req.Password)
	if f != nil {
		writeJSON(w, f.Status, f)
		return
	}
	a, err := s.Store.User(r.Context(), u.Username)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "read user", "err", err)
		f := classify(err)
		writeJSON(w, f.Status, f)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": toAPI(a)})
}

func (s *server) apiMe(w http.ResponseWriter, r *http.Request) {
	a, err := s.current(w, r)
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "read user", "err", err)
		f := classify(err)
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
	s.logout(w, r)
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
			slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr))
	})
}

// sessions are held in memory: a restart signs everyone out. The IDs are
// 32 random bytes; the cookie holds nothing else.
type sessions struct {
	mu sync.Mutex
	m  map[string]session
}

type session struct {
	username string
	expires  time.Time
}

func (s *sessions) create(username string, ttl time.Duration) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m { // drop expired sessions as new ones come
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = session{username: username, expires: now.Add(ttl)}
	return id, nil
}

func (s *sessions) get(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return "", false
	}
	if time.Now().After(v.expires) {
		delete(s.m, id)
		return "", false
	}
	return v.username, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}
