package tierotel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/metric/noop"

	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/tier"
)

// brokenMeter fails to create every instrument and returns nil for it.
type brokenMeter struct{ noop.Meter }

var errBroken = errors.New("broken meter")

func (brokenMeter) Int64Counter(string, ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return nil, errBroken
}

func (brokenMeter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return nil, errBroken
}

func (brokenMeter) Int64ObservableCounter(string, ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	return nil, errBroken
}

func (brokenMeter) Int64ObservableUpDownCounter(string, ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	return nil, errBroken
}

func (brokenMeter) Int64ObservableGauge(string, ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	return nil, errBroken
}

func (brokenMeter) RegisterCallback(metric.Callback, ...metric.Observable) (metric.Registration, error) {
	return nil, errBroken
}

type brokenMeterProvider struct{ embedded.MeterProvider }

func (brokenMeterProvider) Meter(string, ...metric.MeterOption) metric.Meter { return brokenMeter{} }

// TestNew_InstrumentErrors checks that an Observer whose instruments could
// not be created (the errors go to otel.Handle) still traces and does not
// panic.
func TestNew_InstrumentErrors(t *testing.T) {
	t.Parallel()
	tm := newTelemetry(t)
	obs := tierotel.New(tierotel.WithTracerProvider(tm.tp), tierotel.WithMeterProvider(brokenMeterProvider{}))
	c := newCache(t, &tier.Options[string]{Name: "c", Observer: obs})
	_, err := c.GetOrLoad(t.Context(), "k", constLoad("v"))
	require.NoError(t, err)
	_, err = c.GetOrLoad(t.Context(), "e", func(context.Context, string) (string, error) { return "", errBroken })
	require.ErrorIs(t, err, errBroken)
	c.DropLocal(t.Context())
	require.Len(t, tm.ended("tiercache load"), 2)
}
