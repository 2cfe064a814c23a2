package booking

import (
	"errors"
	"time"

	"github.com/tiercache/tiercache/tier"
)

// CacheOptions configures the caches that [NewCaches] creates. A nil
// *CacheOptions means the defaults: L1-only caches in namespace "booking".
type CacheOptions struct {
	// Namespace is the prefix of the caches' namespaces
	// (Namespace+".profiles", ...). Instances that share data must use the
	// same one. Default: "booking".
	Namespace string
	// Name is the prefix of the caches' names in telemetry
	// (Name+".profiles", ...). Default: Namespace.
	Name string
	// L2 is the shared tier of every cache. Nil means L1 only.
	L2 tier.Remote
	// Invalidator carries invalidations between instances (package
	// invalidate). Nil means none: another instance's L1 copy of a changed
	// value lives until its L1TTL.
	Invalidator tier.Invalidator
	// TTL, L1TTL and NegativeTTL are those of tier.Options.
	// Defaults: tier's.
	TTL, L1TTL, NegativeTTL time.Duration
	// L1MaxCost bounds each cache's L1 (in bytes). Default: tier's.
	L1MaxCost int64
	// L2Timeout bounds every L2 call. Default: tier's (100 ms).
	L2Timeout time.Duration
	// Observer receives every cache's events. Default: none.
	Observer tier.Observer
}

// Caches are the caches of a [CachedRepository], one per type of value. It
// is safe for concurrent use.
type Caches struct {
	Profiles         *tier.Cache[Profile]
	Experts          *tier.Cache[Expert]
	ExpertLists      *tier.Cache[[]Expert]
	Appointments     *tier.Cache[Appointment]
	AppointmentLists *tier.Cache[[]Appointment]
}

// NewCaches creates the caches of a [CachedRepository].
func NewCaches(o *CacheOptions) (*Caches, error) {
	var opts CacheOptions
	if o != nil {
		opts = *o
	}
	if opts.Namespace == "" {
		opts.Namespace = "booking"
	}
	if opts.Name == "" {
		opts.Name = opts.Namespace
	}
	c := &Caches{}
	var err error
	if c.Profiles, err = newCache[Profile](&opts, "profiles"); err != nil {
		return nil, err
	}
	if c.Experts, err = newCache[Expert](&opts, "experts"); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	if c.ExpertLists, err = newCache[[]Expert](&opts, "expert_lists"); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	if c.Appointments, err = newCache[Appointment](&opts, "appointments"); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	if c.AppointmentLists, err = newCache[[]Appointment](&opts, "appointment_lists"); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func newCache[V any](o *CacheOptions, name string) (*tier.Cache[V], error) {
	return tier.New(&tier.Options[V]{
		Name:        o.Name + "." + name,
		Namespace:   o.Namespace + "." + name,
		L2:          o.L2,
		Invalidator: o.Invalidator,
		TTL:         o.TTL,
		L1TTL:       o.L1TTL,
		NegativeTTL: o.NegativeTTL,
		L1MaxCost:   o.L1MaxCost,
		L2Timeout:   o.L2Timeout,
		Observer:    o.Observer,
	})
}

// each calls f for every cache that is set, with its L2 key prefix (see
// [Caches.KeyPrefixes]), its stats and its Close.
func (c *Caches) each(f func(prefix string, s tier.Stats, close func() error)) {
	if c.Profiles != nil {
		f(commonPrefix(c.Profiles.Key(""), c.Profiles.TagKey("")), c.Profiles.Stats(), c.Profiles.Close)
	}
	if c.Experts != nil {
		f(commonPrefix(c.Experts.Key(""), c.Experts.TagKey("")), c.Experts.Stats(), c.Experts.Close)
	}
	if c.ExpertLists != nil {
		f(commonPrefix(c.ExpertLists.Key(""), c.ExpertLists.TagKey("")), c.ExpertLists.Stats(), c.ExpertLists.Close)
	}
	if c.Appointments != nil {
		f(commonPrefix(c.Appointments.Key(""), c.Appointments.TagKey("")), c.Appointments.Stats(), c.Appointments.Close)
	}
	if c.AppointmentLists != nil {
		f(commonPrefix(c.AppointmentLists.Key(""), c.AppointmentLists.TagKey("")), c.AppointmentLists.Stats(), c.AppointmentLists.Close)
	}
}

func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n]
}

// Stats returns the sum of the caches' counters (Breaker is open if any
// cache's breaker is, else half-open if any is; L1Cost is the total).
func (c *Caches) Stats() tier.Stats {
	var sum tier.Stats
	c.each(func(_ string, s tier.Stats, _ func() error) {
		sum.L1Hits += s.L1Hits
		sum.Misses += s.Misses
		sum.L2Hits += s.L2Hits
		sum.NegativeHits += s.NegativeHits
		sum.StaleServed += s.StaleServed
		sum.Refreshes += s.Refreshes
		sum.Loads += s.Loads
		sum.LoadErrors += s.LoadErrors
		sum.Fallbacks += s.Fallbacks
		sum.L2Errors += s.L2Errors
		sum.DecodeErrors += s.DecodeErrors
		sum.Refused += s.Refused
		sum.LeaseWaits += s.LeaseWaits
		sum.LeaseLost += s.LeaseLost
		sum.PendingInvalidations += s.PendingInvalidations
		sum.Replayed += s.Replayed
		if s.Breaker == tier.BreakerOpen || sum.Breaker == tier.BreakerClosed {
			sum.Breaker = s.Breaker
		}
		sum.BreakerOpens += s.BreakerOpens
		sum.L1Cost += s.L1Cost
		sum.L1SetsDropped += s.L1SetsDropped
		sum.L1SetsRejected += s.L1SetsRejected
		sum.L1Evicted += s.L1Evicted
	})
	return sum
}

// KeyPrefixes returns, for each cache, the prefix of every key it writes to
// L2 (values, leases and tag times alike): what to SCAN for to remove a
// cache's keys after a run. No key of a cache with another namespace
// starts with it.
func (c *Caches) KeyPrefixes() []string {
	var out []string
	c.each(func(prefix string, _ tier.Stats, _ func() error) { out = append(out, prefix) })
	return out
}

// Close closes every cache. It is idempotent.
func (c *Caches) Close() error {
	c.each(func(_ string, _ tier.Stats, close func() error) { _ = close() }) // tier's Close always returns nil.
	return nil
}
