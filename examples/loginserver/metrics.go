package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// metrics is the server's OpenTelemetry MeterProvider, exported in the
// Prometheus text format at GET /metrics. Everything that records metrics
// in the server (ldapauth through Config.MeterProvider, the server's own
// handlers) takes Provider, so one scrape sees them all.
type metrics struct {
	// Provider is the MeterProvider to record with.
	Provider *sdkmetric.MeterProvider
	// Handler serves the Prometheus text format.
	Handler http.Handler
}

// newMetrics makes the provider, its exporter and a registry of their own
// (the process's global registry is left alone), with the Go runtime and
// process collectors beside them.
func newMetrics() (*metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	return &metrics{
		Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		Handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
	}, nil
}

// Shutdown stops the provider.
func (m *metrics) Shutdown(ctx context.Context) error { return m.Provider.Shutdown(ctx) }

// withMetrics serves GET /metrics with metrics and every other request with
// next. Scrapes bypass next's request log and session handling.
func withMetrics(next, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/", next)
	return mux
}
