package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tiercache/tiercache/examples/booking"
)

// Config configures [Run]. The zero value is valid: SQLite in a temporary
// folder, no Redis, the default mix for 30 seconds, output discarded.
type Config struct {
	// Duration is how long the mix runs: long enough for the caches to
	// warm, so that the hit rate of its second half can be judged against
	// the target. Default: 30 seconds.
	Duration time.Duration
	// Workers is the number of goroutines issuing operations. Default: 8.
	Workers int
	// ReadRatio is the share of operations that are reads, in [0, 1]; the
	// rest are writes: 50% bookings, 20% cancellations, 30% profile
	// updates. Default: 0.98. Use NoWrites for reads only.
	ReadRatio float64
	// NoWrites runs reads only (ReadRatio 1).
	NoWrites bool
	// Zipf is the exponent s (> 1) of the Zipf distribution of the ids
	// read; larger is more skewed. Default: 1.1.
	Zipf float64

	// Seed sizes the database. Default: booking's defaults (5,000
	// profiles, 2,000 experts, 30,000 appointments over 14 days).
	Seed booking.SeedOptions

	// DatabaseURL is a PostgreSQL URL; the demo creates its tables in a
	// schema of its own and drops it at the end. Empty means SQLite in a
	// temporary folder, removed at the end.
	DatabaseURL string
	// RedisAddr is Redis's host:port (or a redis:// URL). Empty means no
	// Redis: two L1-only instances. If Redis does not answer, Run says so
	// in one line and runs L1-only.
	RedisAddr string

	// TTL and L1TTL are the caches'. Defaults: 5 minutes and 1 minute.
	TTL, L1TTL time.Duration
	// L2Timeout bounds every Redis call of the caches. Default: tier's
	// (100 ms).
	L2Timeout time.Duration
	// L1MaxCost bounds the L1 of each of an instance's caches, in bytes
	// (there are five per instance: profiles, experts, appointments and
	// two kinds of list). Default: 16 MiB.
	L1MaxCost int64

	// MetricsAddr is where Run serves the caches' metrics for Prometheus
	// (http://MetricsAddr/metrics), through OpenTelemetry's Prometheus
	// exporter. Empty means no metrics. If the address cannot be listened
	// on, Run says so and goes on without.
	MetricsAddr string

	// Out receives the progress lines and the final table. Default: none.
	Out io.Writer
	// Progress is the interval between progress lines. Default: 1 second.
	Progress time.Duration
	// Terminal ends progress lines with a carriage return, so that each
	// overwrites the last; otherwise each is a line of its own.
	Terminal bool

	// OnBooking, if set, is called after each booking the mix made, from
	// the workers' goroutines: it must be safe for concurrent use and
	// should not block (cmd/demo queues the booking's confirmations and
	// counts it there).
	OnBooking func(ctx context.Context, a booking.Appointment)
}

func (c Config) withDefaults() (Config, error) {
	if c.Duration < 0 || c.Workers < 0 || c.TTL < 0 || c.L1TTL < 0 || c.Progress < 0 || c.L1MaxCost < 0 {
		return c, errors.New("demo: negative duration or count")
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	switch {
	case c.NoWrites:
		c.ReadRatio = 1
	case c.ReadRatio == 0:
		c.ReadRatio = 0.98
	case c.ReadRatio < 0 || c.ReadRatio > 1:
		return c, fmt.Errorf("demo: read ratio %v is outside [0, 1]", c.ReadRatio)
	}
	if c.Zipf == 0 {
		c.Zipf = 1.1
	}
	if c.Zipf <= 1 {
		return c, fmt.Errorf("demo: Zipf exponent %v must be > 1", c.Zipf)
	}
	if c.TTL == 0 {
		c.TTL = 5 * time.Minute
	}
	if c.L1TTL == 0 {
		c.L1TTL = min(time.Minute, c.TTL)
	}
	if c.L1MaxCost == 0 {
		c.L1MaxCost = 16 << 20
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Progress == 0 {
		c.Progress = time.Second
	}
	return c, nil
}
