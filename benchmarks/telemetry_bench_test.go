package benchmarks

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-ldapauth/ldapauth"
)

// telemetrySetup makes the providers one BenchmarkLoginTelemetry case
// hands ldapauth; nil providers are the global ones, no-ops here.
type telemetrySetup struct {
	name string
	make func() (metric.MeterProvider, trace.TracerProvider, func())
}

var telemetrySetups = []telemetrySetup{
	{"noop", func() (metric.MeterProvider, trace.TracerProvider, func()) { return nil, nil, func() {} }},
	{"meter", func() (metric.MeterProvider, trace.TracerProvider, func()) {
		// A reader aggregates every measurement as an exporter's would.
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		return mp, nil, func() { _ = mp.Shutdown(context.Background()) }
	}},
	{"meter+trace", func() (metric.MeterProvider, trace.TracerProvider, func()) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		return mp, tp, func() { _ = mp.Shutdown(context.Background()); _ = tp.Shutdown(context.Background()) }
	}},
}

// telemetryContender is the pooled ldapauth contender (the default
// configuration, as contender=ldapauth) with s's providers.
func telemetryContender(s telemetrySetup) Contender {
	return Contender{Name: "ldapauth", Open: func(t *Target) (*Session, error) {
		cfg, err := LDAPAuthVariant{Name: "ldapauth"}.config(t.Env())
		if err != nil {
			return nil, err
		}
		mp, tp, shutdown := s.make()
		cfg.MeterProvider, cfg.TracerProvider = mp, tp
		a, err := ldapauth.New(cfg)
		if err != nil {
			shutdown()
			return nil, err
		}
		sess := &Session{}
		sess.onClose(shutdown)
		sess.onClose(func() { a.Close() })
		login := func(ctx context.Context, username, password string) (string, error) {
			u, err := a.Authenticate(ctx, username, password)
			if err != nil {
				return "", err
			}
			return u.Fields["email"], nil
		}
		sess.Worker = func() (LoginFunc, error) { return login, nil }
		return sess, nil
	}}
}

// benchLoginCPU is benchLogin with one worker, reporting also the CPU time
// of this process per login (cpu-ns/op): the client's work, which the
// other load of a shared machine inflates far less than wall time. It
// includes the contender's setup and warm-up login, the same for every
// case and small beside b.N logins.
func benchLoginCPU(b *testing.B, ctx context.Context, c Contender, t *Target) {
	cpu := cpuTime()
	benchLogin(b, ctx, c, t, 1)
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkLoginTelemetry measures the pooled login (contender=ldapauth,
// one worker, plain LDAP) with the no-op providers, an SDK meter, and an
// SDK meter and tracer sampling every login. Compare otel=noop with
// BenchmarkLogin's contender=ldapauth of a build before the telemetry
// (benchmarks/README.md, "Observability overhead").
func BenchmarkLoginTelemetry(b *testing.B) {
	servers := startServers(b)
	ctx := context.Background()
	for _, target := range servers.Targets {
		if target.Mode != Plain {
			continue
		}
		for _, s := range telemetrySetups {
			name := fmt.Sprintf("server=%s/mode=%s/contender=ldapauth/workers=1/otel=%s", target.Server, target.Mode, s.name)
			b.Run(name, func(b *testing.B) { benchLoginCPU(b, ctx, telemetryContender(s), target) })
		}
	}
}
