package ldapauth

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// BenchmarkTelemetryHooks is what the telemetry adds to one pooled login
// without a service account, measured alone: the login span and counters,
// a timed bind and a timed search, the store and syncer steps. Divide by
// the CPU time of a login (BenchmarkLoginTelemetry in benchmarks/) for the
// overhead; that benchmark's own noise is larger than this.
func BenchmarkTelemetryHooks(b *testing.B) {
	for _, tc := range []struct {
		name string
		mp   metric.MeterProvider
	}{
		{"noop", nil},
		{"meter", sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))},
	} {
		b.Run("otel="+tc.name, func(b *testing.B) {
			a, err := New(&Config{URLs: []string{"ldap://127.0.0.1:1"}, MeterProvider: tc.mp})
			require.NoError(b, err)
			defer a.Close()
			t := a.obs
			b.ReportAllocs()
			for b.Loop() {
				func() {
					var err error
					ctx, l := t.loginStart(context.Background(), "alice")
					defer l.end(&err)
					bctx, op := t.op(ctx, opBind, 0)
					op.done(nil)
					_, op = t.op(bctx, opSearch, 0)
					op.done(nil)
					sctx, st := t.step(ctx, "ldapauth.store.save_user")
					st.done(nil)
					_, st = t.step(sctx, "ldapauth.sync_relations")
					st.done(nil)
				}()
			}
		})
	}
}
