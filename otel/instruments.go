package tierotel

import (
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// instrumentMaker creates the instruments of an observer of the primitives
// beside the cache and collects the errors; done hands them to
// otel.Handle. An instrument that could not be created is a no-op one, so
// the observer works without it.
type instrumentMaker struct {
	m    metric.Meter
	errs []error
}

func newInstrumentMaker(opts []Option) *instrumentMaker {
	cfg := newConfig(opts)
	return &instrumentMaker{m: cfg.meterProvider.Meter(ScopeName, metric.WithInstrumentationVersion(Version))}
}

func (in *instrumentMaker) counter(name, unit, description string) metric.Int64Counter {
	c, err := in.m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(description))
	if err != nil {
		in.errs = append(in.errs, err)
		c, _ = noop.Meter{}.Int64Counter(name)
	}
	return c
}

// seconds returns a histogram of durations in seconds.
func (in *instrumentMaker) seconds(name, description string) metric.Float64Histogram {
	h, err := in.m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(description),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		in.errs = append(in.errs, err)
		h, _ = noop.Meter{}.Float64Histogram(name)
	}
	return h
}

// done reports the errors of the instruments of what.
func (in *instrumentMaker) done(what string) {
	if len(in.errs) > 0 {
		otel.Handle(fmt.Errorf("tierotel: create %s instruments: %w", what, errors.Join(in.errs...)))
	}
}

// attrSets keeps the attribute set of each key (a small struct naming one
// combination of attribute values), so that a measurement allocates
// nothing once its combination has been seen. It is safe for concurrent
// use; the zero value is ready.
type attrSets[K comparable] struct{ m sync.Map }

// get returns k's set, built by build the first time.
func (a *attrSets[K]) get(k K, build func(K) []attribute.KeyValue) metric.MeasurementOption {
	if v, ok := a.m.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	v, _ := a.m.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(build(k)...)))
	return v.(metric.MeasurementOption)
}
