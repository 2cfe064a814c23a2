package dbcache

import (
	"errors"
	"time"

	"github.com/tiercache/tiercache/tier"
)

// CacheOptions configures the caches that [NewCaches] creates. A nil
// *CacheOptions means the defaults: L1-only caches in namespace "dbcache".
type CacheOptions struct {
	// Namespace is the prefix of the caches' namespaces
	// (Namespace+".profiles", ...). Instances that share data must use the
	// same one. Default: "dbcache".
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
		opts.Namespace = "dbcache"
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
		Observer:    o.Observer,
	})
}

// each calls f for every cache that is set, as a [Cache], with its L2 key
// prefix and its stats.
func (c *Caches) each(f func(prefix string, s tier.Stats, close func() error)) {
	if c.Profiles != nil {
		f(c.Profiles.Key(""), c.Profiles.Stats(), c.Profiles.Close)
	}
	if c.Experts != nil {
		f(c.Experts.Key(""), c.Experts.Stats(), c.Experts.Close)
	}
	if c.ExpertLists != nil {
		f(c.ExpertLists.Key(""), c.ExpertLists.Stats(), c.ExpertLists.Close)
	}
	if c.Appointments != nil {
		f(c.Appointments.Key(""), c.Appointments.Stats(), c.Appointments.Close)
	}
	if c.AppointmentLists != nil {
		f(c.AppointmentLists.Key(""), c.AppointmentLists.Stats(), c.AppointmentLists.Close)
	}
}

// Stats returns the sum of the caches' counters (Breaker is the worst
// state among them; L1Cost the total).
func (c *Caches) Stats() tier.Stats {
	var sum tier.Stats
	c.each(func(_ string, s tier.Stats, _ func() error) {
		sum.L1Hits += s.L1Hits
		sum.Misses += s.Misses
		sum.L2Hits += s.L2Hits
		sum.NegativeHits += s.NegativeHits
		sum.Loads += s.Loads
		sum.LoadErrors += s.LoadErrors
		sum.Fallbacks += s.Fallbacks
		sum.L2Errors += s.L2Errors
		sum.DecodeErrors += s.DecodeErrors
		sum.Refused += s.Refused
		sum.Breaker = max(sum.Breaker, s.Breaker)
		sum.BreakerOpens += s.BreakerOpens
		sum.L1Cost += s.L1Cost
		sum.L1SetsDropped += s.L1SetsDropped
		sum.L1SetsRejected += s.L1SetsRejected
		sum.L1Evicted += s.L1Evicted
	})
	return sum
}

// KeyPrefixes returns the L2 key prefix of each cache: every key a cache
// writes to L2 starts with its prefix (for cleaning up after a run).
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
