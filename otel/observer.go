package tierotel

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/tier"
)

// Observer is a [tier.Observer] that turns what a cache does beyond its L1
// hits into OpenTelemetry spans, span events and metrics. Give it to a cache
// as tier.Options.Observer; one Observer may serve many caches, which are
// told apart by tier.Options.Name (the cache.name attribute). It is safe for
// concurrent use. Create it with [New].
//
// Spans: one per operation that leaves L1, named "tiercache l2.get",
// "tiercache l2.lease" (take a key's lease, or get-or-lease), "tiercache
// load", "tiercache l2.set" and "tiercache l2.delete", with cache.name,
// cache.tier ("l2" or "origin"), cache.key.hash and, for gets, leases and
// loads, cache.hit. A miss is not an error; a failure sets the span's status
// to Error with the error's message and sets error.type.
//
// Span events, on the span in the context of the call (the caller's span,
// or the l2.get span for a failed L2 read): cache.miss, cache.fallback (with
// cache.fallback.reason), cache.decode_error, cache.value_refused,
// cache.negative_hit, cache.l1_dropped and cache.breaker. L1 hits never reach
// the Observer and are not traced; they are counted (tiercache.requests).
//
// WARNING: a span's status description is the error's message. The errors
// tier and backends/goredis report never contain keys or values, but a
// loader's own errors reach spans as they are: a loader that writes a key
// (an email) into its error message puts it in the trace.
type Observer struct {
	tracer trace.Tracer
	inst   instruments

	mu     sync.Mutex                             // serializes writers of caches
	caches atomic.Pointer[map[string]*cacheState] // copy on write; never nil after New
}

var (
	_ tier.Observer      = (*Observer)(nil)
	_ tier.StatsObserver = (*Observer)(nil)
)

// New returns an Observer that takes its tracer and meter from the
// providers in opts (the global ones by default). Errors creating
// instruments go to otel.Handle; the Observer works without those
// instruments.
func New(opts ...Option) *Observer {
	cfg := newConfig(opts)
	o := &Observer{
		tracer: cfg.tracerProvider.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
	}
	o.caches.Store(&map[string]*cacheState{})
	meter := cfg.meterProvider.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	var errs []error
	o.inst, errs = newInstruments(meter)
	o.register(meter, errs)
	return o
}

// cacheState is what the Observer keeps per cache name.
type cacheState struct {
	attrs cacheAttrs // immutable

	stats []func() tier.Stats // guarded by Observer.mu

	// Per-call counts from End, exported by the callback.
	l2GetErrors  atomic.Uint64
	loadsFound   atomic.Uint64
	loadsMissing atomic.Uint64
	loadErrors   atomic.Uint64
}

// state returns the state of the cache named name, creating it if needed.
func (o *Observer) state(name string) *cacheState {
	if s, ok := (*o.caches.Load())[name]; ok {
		return s
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	old := *o.caches.Load()
	if s, ok := old[name]; ok {
		return s
	}
	s := &cacheState{attrs: newCacheAttrs(name)}
	m := make(map[string]*cacheState, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[name] = s
	o.caches.Store(&m)
	return s
}

// Attach implements [tier.StatsObserver]: tier.New calls it once per cache.
// The Observer reads stats when the metrics are collected. Caches that share
// a name are summed.
//
// NOTE: the Observer keeps stats (and so the cache) for as long as it lives;
// there is no detaching a cache yet.
func (o *Observer) Attach(cache string, stats func() tier.Stats) {
	if stats == nil {
		return
	}
	s := o.state(cache)
	o.mu.Lock()
	defer o.mu.Unlock()
	s.stats = append(s.stats, stats)
}

// spanNames are the span names by tier.Op: low cardinality, as OpenTelemetry
// asks; the key is an attribute.
var spanNames = [...]string{
	tier.OpL2Get:    "tiercache l2.get",
	tier.OpLoad:     "tiercache load",
	tier.OpL2Set:    "tiercache l2.set",
	tier.OpL2Delete: "tiercache l2.delete",
	tier.OpL2Lease:  "tiercache l2.lease",
	tier.OpL2Epoch:  "tiercache l2.epoch",
	tier.OpL2Tags:   "tiercache l2.tags",
}

func spanName(op tier.Op) string {
	if int(op) < len(spanNames) && spanNames[op] != "" {
		return spanNames[op]
	}
	return "tiercache " + op.String()
}

func opTier(op tier.Op) tier.Tier {
	if op == tier.OpLoad {
		return tier.TierOrigin
	}
	return tier.TierL2
}

// Begin implements [tier.Observer]: it starts the operation's span as a child
// of the span in ctx.
func (o *Observer) Begin(ctx context.Context, c tier.Call) context.Context {
	attrs := make([]attribute.KeyValue, 2, 3)
	attrs[0] = keyCacheName.String(c.Cache)
	attrs[1] = keyCacheTier.String(opTier(c.Op).String())
	if c.Key != "" {
		attrs = append(attrs, keyKeyHash.String(c.Key))
	}
	ctx, _ = o.tracer.Start(ctx, spanName(c.Op), trace.WithAttributes(attrs...))
	return ctx
}

// End implements [tier.Observer]: it records the operation's duration and
// ends the span Begin started.
func (o *Observer) End(ctx context.Context, c tier.Call, r tier.Result) {
	s := o.state(c.Cache)
	secs := r.Duration.Seconds()
	switch c.Op {
	case tier.OpLoad:
		switch {
		case r.Err != nil:
			s.loadErrors.Add(1)
		case r.Hit:
			s.loadsFound.Add(1)
		default:
			s.loadsMissing.Add(1)
		}
		o.inst.loadDuration.Record(ctx, secs, s.attrs.duration(c.Op, r))
	case tier.OpL2Get, tier.OpL2Lease, tier.OpL2Set, tier.OpL2Delete, tier.OpL2Epoch, tier.OpL2Tags:
		if (c.Op == tier.OpL2Get || c.Op == tier.OpL2Lease) && r.Err != nil {
			s.l2GetErrors.Add(1)
		}
		o.inst.l2Duration.Record(ctx, secs, s.attrs.duration(c.Op, r))
	}

	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		switch c.Op {
		case tier.OpL2Get, tier.OpL2Lease:
			span.SetAttributes(keyCacheHit.Bool(r.Hit))
		case tier.OpLoad:
			span.SetAttributes(keyLoadFound.Bool(r.Hit))
		}
		if r.Err != nil {
			span.SetStatus(codes.Error, errorDescription(r.Err))
			span.SetAttributes(keyErrorType.String(errorType(r.Err)))
		}
	}
	span.End()
}

// Event implements [tier.Observer]: it counts fallbacks and L1 drops, and
// adds a span event to the span in ctx if that span is recording.
func (o *Observer) Event(ctx context.Context, e tier.Event) {
	switch e.Kind {
	case tier.EventFallback:
		o.inst.fallbacks.Add(ctx, 1, o.state(e.Cache).attrs.fallback(e.Reason))
	case tier.EventL1Dropped:
		o.inst.l1Drops.Add(ctx, 1, metric.WithAttributes(keyCacheName.String(e.Cache), keyDropReason.String(string(e.Reason))))
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, keyCacheName.String(e.Cache))
	if e.Tier != 0 {
		attrs = append(attrs, keyCacheTier.String(e.Tier.String()))
	}
	if e.Key != "" {
		attrs = append(attrs, keyKeyHash.String(e.Key))
	}
	switch e.Kind {
	case tier.EventFallback:
		attrs = append(attrs, keyFallbackReason.String(string(e.Reason)))
	case tier.EventL1Dropped:
		attrs = append(attrs, keyDropReason.String(string(e.Reason)))
	case tier.EventBreaker:
		attrs = append(attrs, keyBreakerFrom.String(e.From.String()), keyBreakerTo.String(e.To.String()))
	}
	if e.Err != nil {
		attrs = append(attrs, keyErrorType.String(errorType(e.Err)))
	}
	span.AddEvent(eventName(e.Kind), trace.WithAttributes(attrs...))
}

// eventNames are the span event names by tier.EventKind.
var eventNames = [...]string{
	tier.EventMiss:         "cache.miss",
	tier.EventFallback:     "cache.fallback",
	tier.EventBreaker:      "cache.breaker",
	tier.EventDecodeError:  "cache.decode_error",
	tier.EventValueRefused: "cache.value_refused",
	tier.EventNegativeHit:  "cache.negative_hit",
	tier.EventL1Dropped:    "cache.l1_dropped",
}

func eventName(k tier.EventKind) string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "cache." + k.String() // a kind newer than this package
}
