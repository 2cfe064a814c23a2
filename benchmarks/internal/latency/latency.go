// Package latency records per-operation durations and reports percentiles.
package latency

import (
	"slices"
	"sync"
	"time"
)

// Recorder collects durations. It is safe for concurrent use; each
// goroutine should record into its own [Recorder.Shard] to avoid
// contention.
type Recorder struct {
	mu     sync.Mutex // guards shards
	shards []*Shard
}

// Shard is one goroutine's share of a Recorder. It is not safe for
// concurrent use.
type Shard struct{ d []time.Duration }

// Shard returns a new shard of r.
func (r *Recorder) Shard() *Shard {
	s := &Shard{d: make([]time.Duration, 0, 1024)}
	r.mu.Lock()
	r.shards = append(r.shards, s)
	r.mu.Unlock()
	return s
}

// Add records one duration.
func (s *Shard) Add(d time.Duration) { s.d = append(s.d, d) }

// Summary is a set of percentiles.
type Summary struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// Summary merges the shards (once every goroutine is done) and returns
// their percentiles.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []time.Duration
	for _, s := range r.shards {
		all = append(all, s.d...)
	}
	return Summarize(all)
}

// Summarize returns the percentiles of d, which it sorts.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Summary{N: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}
