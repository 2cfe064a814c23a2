// Package obstest holds a tier.Observer for tests: it records every call
// and event so that a test can count what the cache reported.
package obstest

import (
	"context"
	"sync"

	"github.com/tiercache/tiercache/tier"
)

// Recorder is a tier.Observer that keeps everything it is told. It is safe
// for concurrent use; the zero value is ready.
type Recorder struct {
	mu     sync.Mutex
	events []tier.Event  // guarded by mu
	calls  []tier.Call   // guarded by mu
	ends   []tier.Result // guarded by mu, parallel to calls
}

var _ tier.Observer = (*Recorder)(nil)

// Begin returns ctx.
func (r *Recorder) Begin(ctx context.Context, _ tier.Call) context.Context { return ctx }

// End records the call and its result.
func (r *Recorder) End(_ context.Context, c tier.Call, res tier.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	r.ends = append(r.ends, res)
}

// Event records e.
func (r *Recorder) Event(_ context.Context, e tier.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns a copy of the events recorded so far.
func (r *Recorder) Events() []tier.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tier.Event(nil), r.events...)
}

// Count returns how many events of kind were recorded.
func (r *Recorder) Count(kind tier.EventKind) int {
	n := 0
	for _, e := range r.Events() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// Dropped returns how many times L1 was dropped for reason
// (tier.EventL1Dropped events).
func (r *Recorder) Dropped(reason tier.Reason) int {
	n := 0
	for _, e := range r.Events() {
		if e.Kind == tier.EventL1Dropped && e.Reason == reason {
			n++
		}
	}
	return n
}

// Ops returns how many calls of op ended.
func (r *Recorder) Ops(op tier.Op) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}
