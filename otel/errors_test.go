package tierotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/tiercache/tiercache/counters"
	"github.com/tiercache/tiercache/idempotency"
	"github.com/tiercache/tiercache/notify"
	"github.com/tiercache/tiercache/onetime"
	tierotel "github.com/tiercache/tiercache/otel"
	"github.com/tiercache/tiercache/ratelimit"
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

// TestPrimitiveObservers_InstrumentErrors checks that the primitives'
// observers, whose instruments could not be created, still add their span
// events and do not panic.
func TestPrimitiveObservers_InstrumentErrors(t *testing.T) {
	t.Parallel()
	_, _, sr, tp := sdkProviders(t)
	broken := tierotel.WithMeterProvider(brokenMeterProvider{})
	ctx, span := tp.Tracer("test").Start(t.Context(), "request")
	tierotel.NewRateLimitObserver(broken).Decided(ctx, ratelimit.Event{Policy: "p", Decision: &ratelimit.Decision{Allowed: true}, Duration: time.Millisecond})
	tierotel.NewIdempotencyObserver(broken).Event(ctx, idempotency.Event{Store: "s", Kind: idempotency.EventAcquired, Duration: time.Millisecond})
	tierotel.NewOneTimeObserver(broken).Event(ctx, onetime.Event{Store: "s", Kind: onetime.EventMinted})
	tierotel.NewNotifyObserver(broken).Event(ctx, notify.Event{Queue: "q", Kind: notify.EventEnqueued, Items: 1})
	tierotel.NewCountersObserver(broken).Event(ctx, counters.Event{Name: "c", Kind: counters.EventFlushed, Items: 1, Duration: time.Millisecond})
	span.End()
	var names []string
	for _, s := range sr.Ended() {
		for _, e := range s.Events() {
			names = append(names, e.Name)
		}
	}
	require.Equal(t, []string{"ratelimit.decision", "idempotency.acquired", "onetime.minted", "notify.enqueued", "counters.flushed"}, names)
}
