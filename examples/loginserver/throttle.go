package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/sqlstore"
)

// throttleConfig sets the brute-force limits. The counters live in the
// database, so every replica counts the attempts made on all of them.
//
// Per username (whatever the client), counted before the directory is
// asked, so concurrent attempts cannot overshoot: after UserLimit failed
// attempts, further attempts are refused with 429 without reaching the
// directory until UserLock has passed since the last one; a client the user
// signed in from within KnownClientAge may make KnownClientLimit. A sign-in
// clears the count, as the directory clears its own. The defaults (3, and 4
// for a known client, 15 minutes) keep a username below a directory lockout
// threshold of 5 (Active Directory's and ppolicy's usual pwdMaxFailure),
// provided the directory forgets failures within 15 minutes of the last
// one (AD's "reset account lockout counter after", ppolicy's
// pwdFailureCountInterval); set UserLimit below your directory's threshold.
//
// Per client address (an IPv6 client by its /64): after ClientLimit failed
// attempts, whatever the usernames, the client waits ClientBackoff, doubled
// with each further failure up to ClientMaxBackoff; the count is forgotten
// ClientForget after the last failure. A known client of the username is
// exempt, so a legitimate user behind the attacker's NAT still signs in.
//
// An attacker guessing one victim's password thus blocks only clients the
// victim never signed in from, for 15 minutes after the attacker's last
// attempt; the victim's own browser keeps one attempt more, and a right
// password from it clears the count.
type throttleConfig struct {
	UserLimit        int
	KnownClientLimit int
	UserLock         time.Duration
	KnownClientAge   time.Duration
	ClientLimit      int
	ClientBackoff    time.Duration
	ClientMaxBackoff time.Duration
	ClientForget     time.Duration
	// Off turns throttling off (tests of other things, a server behind a
	// gateway that throttles).
	Off bool
}

// defaultThrottle holds the defaults, documented on throttleConfig.
var defaultThrottle = throttleConfig{
	UserLimit:        3,
	KnownClientLimit: 4,
	UserLock:         15 * time.Minute,
	KnownClientAge:   30 * 24 * time.Hour,
	ClientLimit:      20,
	ClientBackoff:    time.Minute,
	ClientMaxBackoff: time.Hour,
	ClientForget:     time.Hour,
}

func (c throttleConfig) withDefaults() throttleConfig {
	d := defaultThrottle
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.UserLimit, d.UserLimit)
	set(&c.KnownClientLimit, max(d.KnownClientLimit, c.UserLimit+1))
	setD(&c.UserLock, d.UserLock)
	setD(&c.KnownClientAge, d.KnownClientAge)
	set(&c.ClientLimit, d.ClientLimit)
	setD(&c.ClientBackoff, d.ClientBackoff)
	setD(&c.ClientMaxBackoff, d.ClientMaxBackoff)
	setD(&c.ClientForget, d.ClientForget)
	return c
}

// validate names the bad setting.
func (c throttleConfig) validate() error {
	switch {
	case c.UserLimit < 1:
		return errors.New("-throttle-user-limit must be at least 1")
	case c.KnownClientLimit < c.UserLimit:
		return errors.New("-throttle-known-client-limit must be at least -throttle-user-limit")
	case c.ClientLimit < 1:
		return errors.New("-throttle-client-limit must be at least 1")
	case c.UserLock <= 0:
		return errors.New("-throttle-user-lock must be positive")
	case c.ClientBackoff <= 0 || c.ClientMaxBackoff < c.ClientBackoff || c.ClientForget <= 0:
		return errors.New("throttleConfig: ClientBackoff must be positive and at most ClientMaxBackoff, ClientForget positive")
	}
	return nil
}

type throttle struct {
	cfg     throttleConfig
	store   *sqlstore.Store
	refused metric.Int64Counter
	counted metric.Int64Counter
}

// Names of the limits, in logs and in the metrics' "limit" attribute.
const (
	limitUsername = "username"
	limitClient   = "client"
)

func newThrottle(store *sqlstore.Store, cfg throttleConfig, mp metric.MeterProvider) *throttle {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/go-ldapauth/ldapauth/examples/loginserver")
	t := &throttle{cfg: cfg, store: store}
	// The noop and SDK meters return a usable instrument with any error.
	t.refused, _ = meter.Int64Counter("loginserver.throttle.refused", metric.WithUnit("{attempt}"),
		metric.WithDescription("Login attempts refused with 429 before reaching the directory, by the limit that refused them."))
	t.counted, _ = meter.Int64Counter("loginserver.throttle.failures", metric.WithUnit("{attempt}"),
		metric.WithDescription("Failed login attempts counted against the limits."))
	return t
}

// attempt is one login attempt counted by begin, settled by end.
type attempt struct {
	username, client string
	userKey          string
	clientKey        string // empty for a known client
	refusedBy        string
}

// userKey is the counter of a username: a hash, so that a password typed
// into the username field is not stored.
func userKey(username string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(username)))
	return "user:" + hex.EncodeToString(sum[:16])
}

// begin counts the attempt, or returns how long to wait when a limit
// refuses it.
func (t *throttle) begin(ctx context.Context, username, client string) (attempt, time.Duration, error) {
	a := attempt{username: username, client: client, userKey: userKey(username)}
	if t.cfg.Off {
		return a, 0, nil
	}
	known, err := t.store.KnownClient(ctx, username, client, t.cfg.KnownClientAge)
	if err != nil {
		return a, 0, err
	}
	limit := t.cfg.UserLimit
	if known {
		limit = t.cfg.KnownClientLimit
	}
	rules := []sqlstore.ThrottleRule{{Key: a.userKey, Limit: limit, Backoff: t.cfg.UserLock, MaxBackoff: t.cfg.UserLock, Forget: t.cfg.UserLock}}
	if !known {
		a.clientKey = "client:" + client
		rules = append(rules, sqlstore.ThrottleRule{Key: a.clientKey, Limit: t.cfg.ClientLimit,
			Backoff: t.cfg.ClientBackoff, MaxBackoff: t.cfg.ClientMaxBackoff, Forget: t.cfg.ClientForget})
	}
	by, wait, err := t.store.TakeAttempt(ctx, rules)
	if err != nil {
		return a, 0, err
	}
	if by >= 0 {
		a.refusedBy = []string{limitUsername, limitClient}[by]
		t.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("limit", a.refusedBy)))
		return a, wait, nil
	}
	return a, 0, nil
}

// end settles a counted attempt with the login's outcome: a sign-in (or a
// right password the login group refused) clears the username's count and
// takes the attempt off the client's; a directory that did not answer, or
// an error of ours, takes it off both. Anything else stays counted.
func (t *throttle) end(ctx context.Context, a attempt, err error, u *ldapauth.User) error {
	if t.cfg.Off {
		return nil
	}
	var keys []string
	if a.clientKey != "" {
		keys = append(keys, a.clientKey)
	}
	switch {
	case err == nil || passwordWasRight(err):
		if err := t.store.ClearAttempts(ctx, a.userKey); err != nil {
			return err
		}
		if u != nil {
			if err := t.store.RememberClient(ctx, u.Username, a.client); err != nil {
				return err
			}
		}
		return t.store.ForgiveAttempt(ctx, keys...)
	case errors.Is(err, ldapauth.ErrInvalidCredentials): // wrong password, unknown user, locked account
		t.counted.Add(ctx, 1)
		return nil
	default: // unavailable, cancelled, store or configuration errors: no verdict on the password
		return t.store.ForgiveAttempt(ctx, append(keys, a.userKey)...)
	}
}

// clientAddr is the address of the client: the connection's peer, or, when
// the peer is a trusted proxy, the first address in X-Forwarded-For (read
// from the right) that is not a trusted proxy. An IPv6 address is reduced
// to its /64, the block one machine usually holds.
func (s *server) clientAddr(r *http.Request) string {
	addr := peerAddr(r)
	if addr.IsValid() && s.trusted(addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a hop we cannot read: stop at the last proxy we trust
			}
			addr = hop.Unmap()
			if !s.trusted(addr) {
				break
			}
		}
	}
	if !addr.IsValid() {
		return "unknown"
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

func (s *server) trusted(addr netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// fromTrustedProxy reports whether the request's peer is a trusted proxy.
func (s *server) fromTrustedProxy(r *http.Request) bool {
	addr := peerAddr(r)
	return addr.IsValid() && s.trusted(addr)
}

// lastValue is the last comma-separated value of a header: the one the
// nearest proxy wrote.
func lastValue(values []string) string {
	if len(values) == 0 {
		return ""
	}
	parts := strings.Split(values[len(values)-1], ",")
	return parts[len(parts)-1]
}

// parseProxies reads -trusted-proxies: addresses or CIDR prefixes,
// separated by commas or spaces.
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, errors.New("-trusted-proxies: " + f + " is neither an address nor a CIDR prefix")
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// sweep deletes expired sessions and stale counters every interval until
// ctx ends. Every replica may run it: the deletes are idempotent.
func sweep(ctx context.Context, store *sqlstore.Store, cfg throttleConfig, interval time.Duration, logf func(err error)) {
	cfg = cfg.withDefaults()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if _, err := store.Sweep(ctx, max(cfg.UserLock, cfg.ClientForget), cfg.KnownClientAge); err != nil && ctx.Err() == nil {
			logf(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
