package tierotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/tiercache/tiercache/tier"
)

// The metrics. Every one has the attribute cache.name; see each instrument
// for the others.
//
// TODO(invalidations): tiercache.invalidations.sent and
// tiercache.invalidations.received ({invalidation}, by cache.name) belong
// here, but package tier reports neither yet: it needs Stats fields (for
// example InvalidationsSent, counting keys and tags handed to
// Publisher.Publish, and InvalidationsReceived, counting keys and tags that
// came in through Sink.DropKeys and Sink.DropTags). When they exist, observe
// them in (*Observer).observe as the other Stats counters are.
const (
	// Observable, from tier.Stats and from the Observer's own per-call
	// counts; cache.tier and cache.result. tier=l1 counts reads (hit, miss);
	// tier=l2 counts keys found in L2 (hit) and failed L2 reads (error);
	// tier=origin counts loader calls (hit: found, miss: not found, error).
	metricRequests = "tiercache.requests"
	// Histograms, seconds; cache.hit (L2 gets and leases), cache.load.found
	// (loads), cache.operation (L2: get, lease, set, delete, epoch, tags)
	// and error.type on failures.
	metricLoadDuration = "tiercache.load.duration"
	metricL2Duration   = "tiercache.l2.duration"
	// Counter; cache.fallback.reason.
	metricFallbacks = "tiercache.fallbacks"
	// Counter of whole-L1 drops; cache.drop.reason (the tier's reason).
	metricL1Drops = "tiercache.l1.drops"
	// Observable up-down counter, bytes.
	metricL1Cost = "tiercache.l1.cost"
	// Observable counter of L1 writes lost; cache.drop.reason ("buffer_full",
	// "rejected").
	metricL1WritesLost = "tiercache.l1.writes.lost"
	// Observable counter of L1 entries evicted for room.
	metricL1Evictions = "tiercache.l1.evictions"
	// Observable gauge: how many caches of the name are in each
	// cache.breaker.state (1 and 0s for a single cache).
	metricBreakerState = "tiercache.breaker.state"
	// Observable counter of the times the breaker opened.
	metricBreakerOpens = "tiercache.breaker.opens"
	// Observable counters of values found corrupt in L2 (and deleted), and
	// of values not cached because they were too large.
	metricDecodeErrors = "tiercache.l2.decode_errors"
	metricRefused      = "tiercache.values.refused"
	// Observable: invalidations waiting for replay (up-down counter), and
	// those replayed (counter).
	metricPending  = "tiercache.invalidations.pending"
	metricReplayed = "tiercache.invalidations.replayed"
	// Observable counters of misses that waited for another instance's
	// lease, and of loads whose lease an invalidation removed.
	metricLeaseWaits = "tiercache.lease.waits"
	metricLeaseLost  = "tiercache.lease.lost"
)

// durationBuckets are the histogram boundaries, in seconds: from 50 µs (an
// L2 hit on loopback) to 10 s (the default load timeout). The SDK's default
// boundaries are meant for milliseconds.
var durationBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

type instruments struct {
	loadDuration metric.Float64Histogram
	l2Duration   metric.Float64Histogram
	fallbacks    metric.Int64Counter
	l1Drops      metric.Int64Counter

	requests     metric.Int64ObservableCounter
	l1Cost       metric.Int64ObservableUpDownCounter
	l1WritesLost metric.Int64ObservableCounter
	l1Evictions  metric.Int64ObservableCounter
	breakerState metric.Int64ObservableGauge
	breakerOpens metric.Int64ObservableCounter
	decodeErrors metric.Int64ObservableCounter
	refused      metric.Int64ObservableCounter
	pending      metric.Int64ObservableUpDownCounter
	replayed     metric.Int64ObservableCounter
	leaseWaits   metric.Int64ObservableCounter
	leaseLost    metric.Int64ObservableCounter

	observables []metric.Observable // the ones created, for RegisterCallback
}

// newInstruments creates the instruments on m; a failed instrument is
// replaced by a no-op one, and its error returned.
func newInstruments(m metric.Meter) (instruments, []error) {
	var in instruments
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var nop noop.Meter

	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		keep(err)
		if h == nil {
			h, _ = nop.Float64Histogram(name)
		}
		return h
	}
	counter := func(name, desc, unit string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		keep(err)
		if c == nil {
			c, _ = nop.Int64Counter(name)
		}
		return c
	}
	obsCounter := func(name, desc, unit string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		keep(err)
		if c == nil {
			c, _ = nop.Int64ObservableCounter(name)
		} else {
			in.observables = append(in.observables, c)
		}
		return c
	}
	obsUpDown := func(name, desc, unit string) metric.Int64ObservableUpDownCounter {
		c, err := m.Int64ObservableUpDownCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		keep(err)
		if c == nil {
			c, _ = nop.Int64ObservableUpDownCounter(name)
		} else {
			in.observables = append(in.observables, c)
		}
		return c
	}

	in.loadDuration = hist(metricLoadDuration, "Duration of origin loads.")
	in.l2Duration = hist(metricL2Duration, "Duration of L2 (Redis) calls.")
	in.fallbacks = counter(metricFallbacks, "Reads that skipped or lost L2 and went to the origin, by reason.", "{fallback}")
	in.l1Drops = counter(metricL1Drops, "Times L1 stopped being trusted as a whole, by reason.", "{drop}")

	in.requests = obsCounter(metricRequests, "Cache reads by tier and result.", "{request}")
	in.l1Cost = obsUpDown(metricL1Cost, "Sum of the costs of the values in L1.", "By")
	in.l1WritesLost = obsCounter(metricL1WritesLost, "L1 writes lost to a full buffer or refused by the admission policy.", "{write}")
	in.l1Evictions = obsCounter(metricL1Evictions, "L1 entries evicted for room.", "{entry}")
	g, err := m.Int64ObservableGauge(metricBreakerState, metric.WithDescription("Caches whose L2 circuit breaker is in each state."), metric.WithUnit("{cache}"))
	keep(err)
	if g == nil {
		g, _ = nop.Int64ObservableGauge(metricBreakerState)
	} else {
		in.observables = append(in.observables, g)
	}
	in.breakerState = g
	in.breakerOpens = obsCounter(metricBreakerOpens, "Times the L2 circuit breaker opened.", "{open}")
	in.decodeErrors = obsCounter(metricDecodeErrors, "Values in L2 that did not decode and were deleted.", "{value}")
	in.refused = obsCounter(metricRefused, "Values not cached because they were too large.", "{value}")
	in.pending = obsUpDown(metricPending, "Keys and tags whose invalidation waits for replay.", "{invalidation}")
	in.replayed = obsCounter(metricReplayed, "Keys and tags whose invalidation was replayed.", "{invalidation}")
	in.leaseWaits = obsCounter(metricLeaseWaits, "Misses that waited for another instance's load.", "{wait}")
	in.leaseLost = obsCounter(metricLeaseLost, "Loads whose lease an invalidation removed.", "{load}")

	return in, errs
}

// register registers the callback of the observable instruments, once o.inst
// is set (a collection may call it at once), and reports errs and its own
// error to otel.Handle.
func (o *Observer) register(m metric.Meter, errs []error) {
	if len(o.inst.observables) > 0 {
		if _, err := m.RegisterCallback(o.observe, o.inst.observables...); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		otel.Handle(fmt.Errorf("tierotel: create instruments: %w", errors.Join(errs...)))
	}
}

// observe is the callback of the observable instruments: it reads the
// stats of every attached cache.
func (o *Observer) observe(_ context.Context, ob metric.Observer) error {
	in := &o.inst
	for _, s := range *o.caches.Load() {
		o.mu.Lock()
		fns := s.stats // append-only: the first len(fns) elements never change
		o.mu.Unlock()
		var st tier.Stats
		var breakers [3]int64
		for _, f := range fns {
			one := f()
			add(&st, one)
			if b := one.Breaker; b >= 0 && int(b) < len(breakers) {
				breakers[b]++
			}
		}
		a := &s.attrs
		ob.ObserveInt64(in.requests, u(st.L1Hits), a.l1Hit)
		ob.ObserveInt64(in.requests, u(st.Misses), a.l1Miss)
		ob.ObserveInt64(in.requests, u(st.L2Hits), a.l2Hit)
		ob.ObserveInt64(in.requests, u(s.l2GetErrors.Load()), a.l2Error)
		ob.ObserveInt64(in.requests, u(s.loadsFound.Load()), a.originHit)
		ob.ObserveInt64(in.requests, u(s.loadsMissing.Load()), a.originMiss)
		ob.ObserveInt64(in.requests, u(s.loadErrors.Load()), a.originError)
		if len(fns) == 0 {
			continue // known only from End and Event: no stats to read
		}
		for state, n := range breakers {
			ob.ObserveInt64(in.breakerState, n, a.breaker[state])
		}
		ob.ObserveInt64(in.l1Cost, st.L1Cost, a.name)
		ob.ObserveInt64(in.l1WritesLost, u(st.L1SetsDropped), a.bufferFull)
		ob.ObserveInt64(in.l1WritesLost, u(st.L1SetsRejected), a.rejected)
		ob.ObserveInt64(in.l1Evictions, u(st.L1Evicted), a.name)
		ob.ObserveInt64(in.breakerOpens, u(st.BreakerOpens), a.name)
		ob.ObserveInt64(in.decodeErrors, u(st.DecodeErrors), a.name)
		ob.ObserveInt64(in.refused, u(st.Refused), a.name)
		ob.ObserveInt64(in.pending, int64(st.PendingInvalidations), a.name)
		ob.ObserveInt64(in.replayed, u(st.Replayed), a.name)
		ob.ObserveInt64(in.leaseWaits, u(st.LeaseWaits), a.name)
		ob.ObserveInt64(in.leaseLost, u(st.LeaseLost), a.name)
	}
	return nil
}

// u converts a count to the int64 OpenTelemetry takes, saturating.
func u(n uint64) int64 {
	if n > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(n)
}

// add adds the counters of b to a (for caches that share a name).
func add(a *tier.Stats, b tier.Stats) {
	a.L1Hits += b.L1Hits
	a.Misses += b.Misses
	a.L2Hits += b.L2Hits
	a.NegativeHits += b.NegativeHits
	a.Loads += b.Loads
	a.LoadErrors += b.LoadErrors
	a.Fallbacks += b.Fallbacks
	a.L2Errors += b.L2Errors
	a.DecodeErrors += b.DecodeErrors
	a.Refused += b.Refused
	a.LeaseWaits += b.LeaseWaits
	a.LeaseLost += b.LeaseLost
	a.PendingInvalidations += b.PendingInvalidations
	a.Replayed += b.Replayed
	a.BreakerOpens += b.BreakerOpens
	a.L1Cost += b.L1Cost
	a.L1SetsDropped += b.L1SetsDropped
	a.L1SetsRejected += b.L1SetsRejected
	a.L1Evicted += b.L1Evicted
}

// cacheAttrs are the attribute sets of one cache name, built once.
type cacheAttrs struct {
	nameKV attribute.KeyValue
	name   metric.MeasurementOption

	// tiercache.requests
	l1Hit, l1Miss, l2Hit, l2Error, originHit, originMiss, originError metric.MeasurementOption
	// tiercache.l1.writes.lost
	bufferFull, rejected metric.MeasurementOption
	// tiercache.breaker.state, by tier.BreakerState
	breaker [3]metric.MeasurementOption
	// durations without error
	loadHit, loadMiss, l2GetHit, l2GetMiss, l2LeaseHit, l2LeaseMiss, l2Set, l2Delete metric.MeasurementOption
	// tiercache.fallbacks by the tier's reasons
	fallbackBreakerOpen, fallbackL2Error, fallbackL2Timeout metric.MeasurementOption
}

func newCacheAttrs(name string) cacheAttrs {
	n := keyCacheName.String(name)
	set := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{n}, kv...)...))
	}
	req := func(t tier.Tier, result string) metric.MeasurementOption {
		return set(keyCacheTier.String(t.String()), keyResult.String(result))
	}
	return cacheAttrs{
		nameKV:      n,
		name:        set(),
		l1Hit:       req(tier.TierL1, resultHit),
		l1Miss:      req(tier.TierL1, resultMiss),
		l2Hit:       req(tier.TierL2, resultHit),
		l2Error:     req(tier.TierL2, resultError),
		originHit:   req(tier.TierOrigin, resultHit),
		originMiss:  req(tier.TierOrigin, resultMiss),
		originError: req(tier.TierOrigin, resultError),
		bufferFull:  set(keyDropReason.String("buffer_full")),
		rejected:    set(keyDropReason.String("rejected")),
		breaker: [3]metric.MeasurementOption{
			tier.BreakerClosed:   set(keyBreakerState.String(tier.BreakerClosed.String())),
			tier.BreakerOpen:     set(keyBreakerState.String(tier.BreakerOpen.String())),
			tier.BreakerHalfOpen: set(keyBreakerState.String(tier.BreakerHalfOpen.String())),
		},
		loadHit:             set(keyLoadFound.Bool(true)),
		loadMiss:            set(keyLoadFound.Bool(false)),
		l2GetHit:            set(keyOperation.String("get"), keyCacheHit.Bool(true)),
		l2GetMiss:           set(keyOperation.String("get"), keyCacheHit.Bool(false)),
		l2LeaseHit:          set(keyOperation.String("lease"), keyCacheHit.Bool(true)),
		l2LeaseMiss:         set(keyOperation.String("lease"), keyCacheHit.Bool(false)),
		l2Set:               set(keyOperation.String("set")),
		l2Delete:            set(keyOperation.String("delete")),
		fallbackBreakerOpen: set(keyFallbackReason.String(string(tier.ReasonBreakerOpen))),
		fallbackL2Error:     set(keyFallbackReason.String(string(tier.ReasonL2Error))),
		fallbackL2Timeout:   set(keyFallbackReason.String(string(tier.ReasonL2Timeout))),
	}
}

// l2Operation is the cache.operation of an L2 op.
func l2Operation(op tier.Op) string {
	switch op {
	case tier.OpL2Get:
		return "get"
	case tier.OpL2Set:
		return "set"
	case tier.OpL2Delete:
		return "delete"
	case tier.OpL2Lease:
		return "lease"
	case tier.OpL2Epoch:
		return "epoch"
	case tier.OpL2Tags:
		return "tags"
	}
	return op.String()
}

// duration returns the attributes of an operation's duration.
func (a *cacheAttrs) duration(op tier.Op, r tier.Result) metric.MeasurementOption {
	if r.Err != nil {
		kvs := []attribute.KeyValue{a.nameKV, keyErrorType.String(errorType(r.Err))}
		if op != tier.OpLoad {
			kvs = append(kvs, keyOperation.String(l2Operation(op)))
		}
		switch op {
		case tier.OpLoad:
			kvs = append(kvs, keyLoadFound.Bool(false))
		case tier.OpL2Get:
			kvs = append(kvs, keyCacheHit.Bool(false))
		}
		return metric.WithAttributes(kvs...)
	}
	switch op {
	case tier.OpLoad:
		if r.Hit {
			return a.loadHit
		}
		return a.loadMiss
	case tier.OpL2Get:
		if r.Hit {
			return a.l2GetHit
		}
		return a.l2GetMiss
	case tier.OpL2Lease:
		if r.Hit {
			return a.l2LeaseHit
		}
		return a.l2LeaseMiss
	case tier.OpL2Set:
		return a.l2Set
	case tier.OpL2Delete:
		return a.l2Delete
	}
	return metric.WithAttributes(a.nameKV, keyOperation.String(l2Operation(op)))
}

// fallback returns the attributes of a fallback for reason.
func (a *cacheAttrs) fallback(reason tier.Reason) metric.MeasurementOption {
	switch reason {
	case tier.ReasonBreakerOpen:
		return a.fallbackBreakerOpen
	case tier.ReasonL2Error:
		return a.fallbackL2Error
	case tier.ReasonL2Timeout:
		return a.fallbackL2Timeout
	}
	return metric.WithAttributes(a.nameKV, keyFallbackReason.String(string(reason)))
}
