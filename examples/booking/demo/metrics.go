package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	tierotel "github.com/tiercache/tiercache/otel"
)

// metrics serves the caches' OpenTelemetry metrics to Prometheus: a
// tierotel Observer over a meter provider whose reader is the Prometheus
// exporter, on a registry of its own (no global state), served at /metrics.
type metrics struct {
	observer *tierotel.Observer
	provider *sdkmetric.MeterProvider
	server   *http.Server
	url      string
	served   chan error // receives Serve's error once it returns
}

// startMetrics listens on addr and serves /metrics there.
func startMetrics(addr string) (*metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("demo: prometheus exporter: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: metrics: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &metrics{
		observer: tierotel.New(tierotel.WithMeterProvider(mp)),
		provider: mp,
		server:   &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		url:      "http://" + ln.Addr().String() + "/metrics",
		served:   make(chan error, 1),
	}
	go func() { m.served <- m.server.Serve(ln) }()
	return m, nil
}

// Close stops the server and the meter provider.
func (m *metrics) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.server.Shutdown(ctx)
	if serr := <-m.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, m.provider.Shutdown(ctx))
}
