package ldapauth

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names ldapauth's Meter and Tracer.
const instrumentationName = "github.com/go-ldapauth/ldapauth"

// Login outcomes, the ldapauth.login.outcome attribute; the order of
// outcomeNames, which is the order they are matched in.
const (
	outSuccess = iota
	outCanceled
	outAccount
	outUnknown
	outNotPermitted
	outInvalid
	outUnavailable
	outConfig
	outError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"success", "canceled", "account_state", "unknown_user", "not_permitted",
	"invalid_credentials", "unavailable", "config_error", "error"}

// loginOutcome classifies Authenticate's error.
func loginOutcome(err error) int {
	var lerr *LoginError
	switch {
	case err == nil:
		return outSuccess
	case errors.Is(err, context.Canceled):
		return outCanceled
	case errors.As(err, &lerr) && isAccountState(lerr.Err):
		return outAccount
	case errors.Is(err, ErrUnknownUser):
		return outUnknown
	case errors.Is(err, ErrNotPermitted):
		return outNotPermitted
	case errors.Is(err, ErrInvalidCredentials):
		return outInvalid
	case errors.Is(err, ErrUnavailable):
		return outUnavailable
	case errors.Is(err, ErrConfig), errors.Is(err, ErrServiceAccount):
		return outConfig
	default:
		return outError
	}
}

// LDAP operations timed per server.
const (
	opDial = iota
	opStartTLS
	opBind
	opSearch
	numOps
)

var (
	opNames     = [numOps]string{"dial", "starttls", "bind", "search"}
	opSpanNames = [numOps]string{"ldap.dial", "ldap.starttls", "ldap.bind", "ldap.search"}
)

// Attribute keys: the OpenTelemetry semantic conventions' where they have
// one, ldapauth.* otherwise.
const (
	keyOutcome     = attribute.Key("ldapauth.login.outcome")
	keyUserName    = attribute.Key("user.name")
	keyDBSystem    = attribute.Key("db.system.name")
	keyDBOperation = attribute.Key("db.operation.name")
	keyServerAddr  = attribute.Key("server.address")
	keyServerPort  = attribute.Key("server.port")
	keyErrorType   = attribute.Key("error.type")
	keyPoolName    = attribute.Key("db.client.connection.pool.name")
	keyConnState   = attribute.Key("db.client.connection.state")
	keyURL         = attribute.Key("ldapauth.server.url")
	keySyncOutcome = attribute.Key("ldapauth.sync.outcome")
	keySyncChange  = attribute.Key("ldapauth.sync.change")
	keySyncMode    = attribute.Key("ldapauth.sync.mode")
)

// Histogram buckets in seconds: those the semantic conventions advise for
// client operation durations, with finer steps below 100 ms where logins
// and LDAP operations on a LAN fall.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// telemetry is an Authenticator's metrics and tracing, and the login
// counters of Stats. Every method is safe on a nil *telemetry, which does
// nothing.
type telemetry struct {
	tracer        trace.Tracer
	traceUsername bool

	logins    [numOutcomes]atomic.Uint64
	loginN    metric.Int64Counter
	loginDur  metric.Float64Histogram
	loginAdd  [numOutcomes][]metric.AddOption // precomputed: no allocation per login
	loginRec  [numOutcomes][]metric.RecordOption
	loginAttr [numOutcomes]attribute.KeyValue

	opDur   metric.Float64Histogram
	servers []serverTelemetry

	syncRuns    metric.Int64Counter
	syncDur     metric.Float64Histogram
	syncChanges metric.Int64Counter
	syncUsers   metric.Int64Gauge
	syncPages   metric.Int64Counter

	reg metric.Registration
}

// serverTelemetry is one server's precomputed attributes and last error.
type serverTelemetry struct {
	attrs   []attribute.KeyValue // server.address, server.port, ldapauth.server.url
	opRec   [numOps][]metric.RecordOption
	lastErr atomic.Pointer[serverError]
}

type serverError struct {
	class string
	at    time.Time
}

// newTelemetry makes a's instruments on cfg's providers (the global ones
// when nil). An instrument the provider refuses is replaced by a no-op one
// by the API; such errors go to otel's error handler, never fail New.
func newTelemetry(a *Authenticator) *telemetry {
	cfg := &a.cfg
	mp, tp := cfg.MeterProvider, cfg.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	t := &telemetry{
		tracer:        tp.Tracer(instrumentationName),
		traceUsername: cfg.TraceUsernames,
		servers:       make([]serverTelemetry, len(a.servers)),
	}
	m := mp.Meter(instrumentationName)
	report := func(err error) {
		if err != nil {
			otel.Handle(err)
		}
	}
	var err error
	t.loginN, err = m.Int64Counter("ldapauth.logins", metric.WithUnit("{login}"),
		metric.WithDescription("Logins (Authenticate calls) by outcome."))
	report(err)
	t.loginDur, err = m.Float64Histogram("ldapauth.login.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of Authenticate, by outcome."), metric.WithExplicitBucketBoundaries(durationBuckets...))
	report(err)
	for i := range numOutcomes {
		t.loginAttr[i] = keyOutcome.String(outcomeNames[i])
		set := attribute.NewSet(t.loginAttr[i])
		t.loginAdd[i] = []metric.AddOption{metric.WithAttributeSet(set)}
		t.loginRec[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	t.opDur, err = m.Float64Histogram("db.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of LDAP operations (dial, starttls, bind, search) per server."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	report(err)
	for i, s := range a.servers {
		st := &t.servers[i]
		port, _ := strconv.Atoi(s.address[strings.LastIndexByte(s.address, ':')+1:])
		st.attrs = []attribute.KeyValue{keyServerAddr.String(s.host), keyServerPort.Int(port), keyURL.String(s.url)}
		for op := range numOps {
			set := attribute.NewSet(append([]attribute.KeyValue{keyDBSystem.String("ldap"), keyDBOperation.String(opNames[op])}, st.attrs...)...)
			st.opRec[op] = []metric.RecordOption{metric.WithAttributeSet(set)}
		}
	}

	t.syncRuns, err = m.Int64Counter("ldapauth.sync.runs", metric.WithUnit("{run}"),
		metric.WithDescription("Sync runs by outcome."))
	report(err)
	t.syncDur, err = m.Float64Histogram("ldapauth.sync.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of Sync, by outcome."),
		metric.WithExplicitBucketBoundaries(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
	report(err)
	t.syncChanges, err = m.Int64Counter("ldapauth.sync.changes", metric.WithUnit("{change}"),
		metric.WithDescription("Store writes made by applied syncs, by kind of change."))
	report(err)
	t.syncUsers, err = m.Int64Gauge("ldapauth.sync.users", metric.WithUnit("{user}"),
		metric.WithDescription("Users seen by the last sync that read the directory: ldapauth.sync.source is directory or store."))
	report(err)
	t.syncPages, err = m.Int64Counter("ldapauth.sync.pages", metric.WithUnit("{page}"),
		metric.WithDescription("Pages of users read by syncs."))
	report(err)

	t.reg, err = t.observePools(m, a)
	report(err)
	return t
}

// observePools registers the observable instruments, read from Stats at
// each collection.
func (t *telemetry) observePools(m metric.Meter, a *Authenticator) (metric.Registration, error) {
	conns, err1 := m.Int64ObservableUpDownCounter("db.client.connection.count", metric.WithUnit("{connection}"),
		metric.WithDescription("Open LDAP connections by pool and state (idle, used)."))
	maxIdle, err2 := m.Int64ObservableUpDownCounter("db.client.connection.idle.max", metric.WithUnit("{connection}"),
		metric.WithDescription("The most idle connections a pool keeps (LDAP_AUTH_POOL_SIZE)."))
	dials, err3 := m.Int64ObservableCounter("ldapauth.pool.dials", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections dialled for a pool."))
	dialFailures, err4 := m.Int64ObservableCounter("ldapauth.pool.dial_failures", metric.WithUnit("{dial}"),
		metric.WithDescription("Dials for a pool that reached no server."))
	stale, err5 := m.Int64ObservableCounter("ldapauth.pool.stale_closed", metric.WithUnit("{connection}"),
		metric.WithDescription("Idle connections closed when taken from a pool (dropped by the server, idle too long, or to a server after one back from back-off)."))
	retries, err6 := m.Int64ObservableCounter("ldapauth.pool.retries", metric.WithUnit("{operation}"),
		metric.WithDescription("First operations run again on a new connection because theirs was lost before any answer."))
	up, err7 := m.Int64ObservableGauge("ldapauth.server.up",
		metric.WithDescription("1 while the server answers, 0 from a failure to its next answer."))
	failures, err8 := m.Int64ObservableGauge("ldapauth.server.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("The server's failures in a row (its back-off grows with them)."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8); err != nil {
		return nil, err
	}
	pools := [2]struct {
		name       string
		idle, used metric.ObserveOption
		pool       metric.ObserveOption
	}{}
	for i, name := range [2]string{"ldapauth.users", "ldapauth.service"} {
		p := keyPoolName.String(name)
		pools[i].name = name
		pools[i].idle = metric.WithAttributeSet(attribute.NewSet(p, keyConnState.String("idle")))
		pools[i].used = metric.WithAttributeSet(attribute.NewSet(p, keyConnState.String("used")))
		pools[i].pool = metric.WithAttributeSet(attribute.NewSet(p))
	}
	serverOpts := make([]metric.ObserveOption, len(t.servers))
	for i := range t.servers {
		serverOpts[i] = metric.WithAttributeSet(attribute.NewSet(t.servers[i].attrs...))
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := a.Stats()
		for i, ps := range [2]PoolStats{st.Users, st.Service} {
			if i == 1 && a.cfg.ConnectionUsername == "" {
				break // no service pool
			}
			o.ObserveInt64(conns, int64(ps.Idle), pools[i].idle)
			o.ObserveInt64(conns, int64(ps.InUse), pools[i].used)
			o.ObserveInt64(maxIdle, int64(ps.MaxIdle), pools[i].pool)
			o.ObserveInt64(dials, int64(ps.Dials), pools[i].pool)
			o.ObserveInt64(dialFailures, int64(ps.DialFailures), pools[i].pool)
			o.ObserveInt64(stale, int64(ps.StaleClosed), pools[i].pool)
			o.ObserveInt64(retries, int64(ps.Retries), pools[i].pool)
		}
		for i, s := range st.Servers {
			v := int64(0)
			if s.Up {
				v = 1
			}
			o.ObserveInt64(up, v, serverOpts[i])
			o.ObserveInt64(failures, int64(s.Failures), serverOpts[i])
		}
		return nil
	}, conns, maxIdle, dials, dialFailures, stale, retries, up, failures)
}

// close unregisters the observable instruments.
func (t *telemetry) close() {
	if t != nil && t.reg != nil {
		_ = t.reg.Unregister()
	}
}

func (t *telemetry) lastError(server int) *serverError {
	if t == nil || server >= len(t.servers) {
		return nil
	}
	return t.servers[server].lastErr.Load()
}

// loginSpan is one Authenticate call being measured.
type loginSpan struct {
	t     *telemetry
	ctx   context.Context
	span  trace.Span
	start time.Time
}

// loginStart starts the ldapauth.authenticate span; the returned ctx
// carries it to the operations of the login.
func (t *telemetry) loginStart(ctx context.Context, username string) (context.Context, loginSpan) {
	if t == nil {
		return ctx, loginSpan{}
	}
	l := loginSpan{t: t, start: time.Now()}
	ctx, l.span = t.tracer.Start(ctx, "ldapauth.authenticate")
	if t.traceUsername && l.span.IsRecording() {
		l.span.SetAttributes(keyUserName.String(username))
	}
	l.ctx = ctx
	return ctx, l
}

// end counts the login under its outcome and ends the span; err points to
// Authenticate's error.
func (l loginSpan) end(err *error) {
	t := l.t
	if t == nil {
		return
	}
	out := loginOutcome(*err)
	t.logins[out].Add(1)
	t.loginN.Add(l.ctx, 1, t.loginAdd[out]...)
	t.loginDur.Record(l.ctx, time.Since(l.start).Seconds(), t.loginRec[out]...)
	if l.span.IsRecording() {
		l.span.SetAttributes(t.loginAttr[out])
		switch out {
		case outUnavailable, outConfig, outError:
			l.span.SetAttributes(keyErrorType.String(errorClass(*err)))
			l.span.SetStatus(codes.Error, t.describe(*err, outcomeNames[out]))
		}
	}
	l.span.End()
}

// describe is a span status: err's message when the caller allows it
// (messages may name the user), the class otherwise.
func (t *telemetry) describe(err error, class string) string {
	if t.traceUsername {
		return err.Error()
	}
	return class
}

// opSpan is one LDAP operation being timed.
type opSpan struct {
	t      *telemetry
	ctx    context.Context
	span   trace.Span // nil when not traced
	start  time.Time
	op     int
	server int
}

// op starts timing an LDAP operation on a server, and its span when the
// caller's span is recording (a login or a sync being traced).
func (t *telemetry) op(ctx context.Context, op, server int) (context.Context, opSpan) {
	if t == nil || server < 0 || server >= len(t.servers) {
		return ctx, opSpan{}
	}
	s := opSpan{t: t, ctx: ctx, start: time.Now(), op: op, server: server}
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, s.span = t.tracer.Start(ctx, opSpanNames[op], trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(t.servers[server].attrs...))
		s.ctx = ctx
	}
	return ctx, s
}

// done records the operation's duration and ends its span. A failure that
// says something about the server becomes its last error (Stats).
func (s opSpan) done(err error) {
	t := s.t
	if t == nil {
		return
	}
	d := time.Since(s.start).Seconds()
	st := &t.servers[s.server]
	if err == nil {
		t.opDur.Record(s.ctx, d, st.opRec[s.op]...)
		if s.span != nil {
			s.span.End()
		}
		return
	}
	class := errorClass(err)
	attrs := make([]attribute.KeyValue, 0, len(st.attrs)+3)
	attrs = append(attrs, keyDBSystem.String("ldap"), keyDBOperation.String(opNames[s.op]), keyErrorType.String(class))
	attrs = append(attrs, st.attrs...)
	t.opDur.Record(s.ctx, d, metric.WithAttributes(attrs...))
	if serverFault(s.op, err) {
		st.lastErr.Store(&serverError{class: class, at: time.Now()})
	}
	if s.span != nil {
		s.span.SetAttributes(keyErrorType.String(class))
		s.span.SetStatus(codes.Error, t.describe(err, class))
		s.span.End()
	}
}

// serverFault reports whether err of op says the server is failing, rather
// than refusing a request (a wrong password) or being abandoned (ctx).
func serverFault(op int, err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	return op == opDial || op == opStartTLS || isNetworkError(err) || errors.Is(err, ErrUnavailable)
}

// errorClass is err's error.type: a short, fixed name for dashboards.
func errorClass(err error) string {
	var tlsErr *TLSError
	var dnsErr *net.DNSError
	var ldapErr *ldap.Error
	var netErr net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errReceiveTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &tlsErr):
		return "tls"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &ldapErr):
		switch ldapErr.ResultCode {
		case ldap.ErrorNetwork:
			return "network"
		case ldap.LDAPResultBusy:
			return "busy"
		case ldap.LDAPResultUnavailable:
			return "unavailable"
		}
		if name, ok := ldap.LDAPResultCodeMap[ldapErr.ResultCode]; ok {
			return strings.ToLower(strings.ReplaceAll(name, " ", "_"))
		}
		return "ldap_" + strconv.Itoa(int(ldapErr.ResultCode))
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.As(err, &netErr):
		return "network"
	}
	return "other"
}

// spanStep is a span around one step of a login (the store, the syncer).
type spanStep struct{ span trace.Span }

// step starts a span for a step of a traced login; nothing otherwise.
func (t *telemetry) step(ctx context.Context, name string) (context.Context, spanStep) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, spanStep{}
	}
	ctx, span := t.tracer.Start(ctx, name)
	return ctx, spanStep{span: span}
}

func (s spanStep) done(err error) {
	if s.span == nil {
		return
	}
	if err != nil {
		s.span.SetAttributes(keyErrorType.String(errorClass(err)))
		s.span.SetStatus(codes.Error, "failed")
	}
	s.span.End()
}

// syncSpan is one Sync run being measured.
type syncSpan struct {
	t     *telemetry
	ctx   context.Context
	span  trace.Span
	start time.Time
	opts  SyncOptions
	// changes marks a change-driven run (SyncChanges, WatchChanges): its
	// runs and duration also carry ldapauth.sync.mode, the report's
	// ChangeSync.Mode, once known.
	changes bool
}

func (t *telemetry) syncStart(ctx context.Context, opts SyncOptions) (context.Context, syncSpan) {
	if t == nil {
		return ctx, syncSpan{}
	}
	s := syncSpan{t: t, start: time.Now(), opts: opts}
	ctx, s.span = t.tracer.Start(ctx, "ldapauth.sync", trace.WithAttributes(
		attribute.Bool("ldapauth.sync.dry_run", opts.DryRun), attribute.Bool("ldapauth.sync.force", opts.Force),
		attribute.Bool("ldapauth.sync.create_users", opts.CreateUsers)))
	s.ctx = ctx
	return ctx, s
}

// syncOutcome names a sync run's outcome, and the removal guard's decision
// ("" when the run stopped before the plan).
func syncOutcome(rep *SyncReport, err error) (outcome, guard string) {
	switch {
	case errors.Is(err, ErrRemovalGuard):
		return "refused", "refused"
	case errors.Is(err, ErrSyncAborted):
		return "aborted", ""
	case rep == nil && err != nil:
		return "failed", ""
	}
	guard = "passed"
	if rep.Forced && len(rep.UsersRemoved) > 0 {
		guard = "forced"
	}
	switch {
	case err != nil:
		return "failed", guard
	case rep.DryRun:
		return "dry_run", guard
	default:
		return "applied", guard
	}
}

// end records the run; rep and err point to Sync's results.
func (s syncSpan) end(rep **SyncReport, err *error) {
	t := s.t
	if t == nil {
		return
	}
	outcome, guard := syncOutcome(*rep, *err)
	attrs := []attribute.KeyValue{keySyncOutcome.String(outcome)}
	if r := *rep; s.changes && r != nil && r.ChangeSync != nil {
		attrs = append(attrs, keySyncMode.String(r.ChangeSync.Mode))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	t.syncRuns.Add(s.ctx, 1, set)
	t.syncDur.Record(s.ctx, time.Since(s.start).Seconds(), set)
	if r := *rep; r != nil {
		t.syncPages.Add(s.ctx, int64(r.Pages))
		t.syncUsers.Record(s.ctx, int64(r.DirectoryUsers), metric.WithAttributes(attribute.String("ldapauth.sync.source", "directory")))
		t.syncUsers.Record(s.ctx, int64(r.StoreUsers), metric.WithAttributes(attribute.String("ldapauth.sync.source", "store")))
		if r.Applied {
			for _, c := range r.counts().changes() {
				if c.n > 0 {
					t.syncChanges.Add(s.ctx, int64(c.n), metric.WithAttributes(keySyncChange.String(c.name)))
				}
			}
		}
		attrs = append(attrs, attribute.String("ldapauth.sync.guard", guard),
			attribute.Int("ldapauth.sync.pages", r.Pages), attribute.Int("ldapauth.sync.directory_users", r.DirectoryUsers),
			attribute.Int("ldapauth.sync.store_users", r.StoreUsers), attribute.Int("ldapauth.sync.changes", r.Changes()),
			attribute.Bool("ldapauth.sync.applied", r.Applied))
	}
	if s.span.IsRecording() {
		s.span.SetAttributes(attrs...)
		if *err != nil && outcome != "refused" {
			s.span.SetAttributes(keyErrorType.String(errorClass(*err)))
			s.span.SetStatus(codes.Error, t.describe(*err, outcome))
		}
	}
	s.span.End()
}

// syncChange is one kind of store write and how many.
type syncChange struct {
	name string
	n    int
}

// changes lists the kinds of store writes, by the JSON names of the
// fields; Skipped and GroupsLeftAlone are not writes.
func (c syncCounts) changes() []syncChange {
	return []syncChange{
		{"users_removed", c.UsersRemoved}, {"users_updated", c.UsersUpdated}, {"users_created", c.UsersCreated},
		{"organisation_joins", c.OrganisationJoins}, {"groups_created", c.GroupsCreated},
		{"groups_removed", c.GroupsRemoved}, {"memberships_added", c.MembershipsAdded},
		{"memberships_removed", c.MembershipsRemoved},
	}
}
