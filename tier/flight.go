package tier

import (
	"sync"
	"time"
)

// call is one load in flight for one key (or one key of a batch load).
type call[V any] struct {
	done chan struct{} // closed once val, err and panicked are set

	// Written by the flight before done is closed; read-only after.
	val      V
	err      error
	panicked *PanicError
	stale    bool // val is a stale value standing in for a failed load
	// expires is when a completed call stops answering late joiners (unix
	// nanos); zero for a failed load, which late joiners never share.
	expires int64

	fenced  bool     // guarded by flights.mu: an invalidation overtook this load
	started int64    // unix nanos: when the call joined the table; immutable
	tags    []string // the tags of its key's value; immutable
	inL1    bool     // guarded by flights.mu: install wrote its value to L1 (maybe still queued there)
}

// flights is the per-process single flight table. Unlike x/sync's
// singleflight, a completed call stays in the table until its value is
// visible in L1 (ristretto applies Sets asynchronously), so a caller that
// arrives in between gets the result instead of loading again; and an
// invalidation fences the calls it overtakes.
type flights[V any] struct {
	mu     sync.Mutex
	m      map[string]*call[V] // guarded by mu
	closed bool                // guarded by mu
	wg     sync.WaitGroup      // counts flight goroutines; Add only under mu while !closed

	// trusted (set by New) reports whether the value of a call that started
	// at started, for a key whose value depends on tags, may still be
	// served; running tells a call still loading (its value is not yet read,
	// so an age limit does not apply to it). nil: always.
	trusted func(started int64, tags []string, running bool) bool

	// Retirement: a completed call whose value went to L1 leaves the table
	// only once that value is visible there (ristretto applies Sets
	// asynchronously). Instead of each flight waiting for L1, completed
	// calls queue here and one sweeper waits for L1 once per batch.
	wait     func()       // blocks until earlier L1 Sets are visible; set by New
	retiring []retiree[V] // guarded by mu
	sweeping bool         // guarded by mu: a sweeper goroutine runs
}

// retiree is a completed call waiting to leave the table.
type retiree[V any] struct {
	key string
	c   *call[V]
}

// sweepDelay is how long a sweeper gathers completed calls before it waits
// for L1: at most one sweeper goroutine per sweepDelay, however many
// flights complete.
const sweepDelay = time.Millisecond

// usable reports whether a caller arriving at now may join c: c is still
// running, or it completed with a value that is still fresh.
func (c *call[V]) usable(now int64) bool {
	select {
	case <-c.done:
		return now < c.expires
	default:
		return true
	}
}

// join returns the call for key and whether the caller must run it (and
// then call wg.Done). A call is joined while it runs, or after it completed
// with a value that is still fresh, unless something heard since it started
// rules its value out (a drop of L1, an invalidation of one of its tags,
// and for a completed call the invalidator's age limit): such a call is
// fenced and replaced. tags are those of key's value. join returns nil
// once the table is closed.
func (f *flights[V]) join(key string, now int64, tags []string) (c *call[V], leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	if c, ok := f.m[key]; ok {
		if f.trusted == nil || f.trusted(c.started, c.tags, !c.isDone()) {
			if c.usable(now) {
				return c, false
			}
		} else {
			c.fenced = true
		}
	}
	c = f.start(key, now)
	c.tags = tags
	return c, true
}

// isDone reports whether c completed.
func (c *call[V]) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// start puts a new call for key in the table; f.mu is held.
func (f *flights[V]) start(key string, now int64) *call[V] {
	if f.m == nil {
		f.m = make(map[string]*call[V])
	}
	c := &call[V]{done: make(chan struct{}), started: now}
	f.m[key] = c
	f.wg.Add(1)
	return c
}

// joinRunning is join for a refresh: a completed call does not count.
func (f *flights[V]) joinRunning(key string, now int64, tags []string) (c *call[V], leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	if c, ok := f.m[key]; ok {
		select {
		case <-c.done:
		default:
			return c, false
		}
	}
	c = f.start(key, now)
	c.tags = tags
	return c, true
}

// joinMany is join for several keys under one lock. leaders[i] reports
// whether calls[i] is the caller's to run; wg counts one goroutine for the
// whole batch when any key needs it.
func (f *flights[V]) joinMany(keys []string, now int64) (calls []*call[V], leaders []bool, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, false
	}
	if f.m == nil {
		f.m = make(map[string]*call[V])
	}
	calls = make([]*call[V], len(keys))
	leaders = make([]bool, len(keys))
	any := false
	for i, k := range keys {
		if c, ok := f.m[k]; ok && c.usable(now) {
			calls[i] = c
			continue
		}
		c := &call[V]{done: make(chan struct{}), started: now}
		f.m[k] = c
		calls[i], leaders[i], any = c, true, true
	}
	if any {
		f.wg.Add(1)
	}
	return calls, leaders, true
}

// forget removes c from the table if it is still the call for key.
func (f *flights[V]) forget(key string, c *call[V]) {
	f.mu.Lock()
	if f.m[key] == c {
		delete(f.m, key)
	}
	f.mu.Unlock()
}

// retire removes c from the table, if it is still the call for key, once
// the L1 Sets made before this call are visible. Until then c answers
// callers that miss L1 (while it is usable).
func (f *flights[V]) retire(key string, c *call[V]) {
	f.mu.Lock()
	if f.closed || f.m[key] != c {
		f.mu.Unlock()
		return
	}
	f.retiring = append(f.retiring, retiree[V]{key, c})
	start := !f.sweeping
	if start {
		f.sweeping = true
		f.wg.Add(1)
	}
	f.mu.Unlock()
	if start {
		go f.sweep()
	}
}

// sweep retires queued calls in batches until the queue is empty.
func (f *flights[V]) sweep() {
	defer f.wg.Done()
	var batch []retiree[V]
	for {
		time.Sleep(sweepDelay)
		f.mu.Lock()
		batch, f.retiring = f.retiring, batch[:0]
		if len(batch) == 0 || f.closed {
			f.sweeping = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		f.wait()
		f.mu.Lock()
		for i, r := range batch {
			if f.m[r.key] == r.c {
				delete(f.m, r.key)
			}
			batch[i] = retiree[V]{}
		}
		f.mu.Unlock()
	}
}

// fence marks the call for key as overtaken by an invalidation and removes
// it, so it installs nothing and new callers start afresh.
//
// It reports whether it removed a call that wrote to L1: only such a call
// can still have its L1 write queued in ristretto (the sweeper removes
// calls after waiting for L1).
func (f *flights[V]) fence(key string) (wroteL1 bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.m[key]; ok {
		c.fenced = true
		delete(f.m, key)
		return c.inL1
	}
	return false
}

// put fences the call for key, if any, and puts in its place a completed
// call answering val until expires: the value a Set is writing, so that a
// caller who misses L1 meanwhile joins it instead of reading the old value
// from L2. It returns nil once the table is closed. The caller removes it
// with forget; a fence in between marks it fenced.
func (f *flights[V]) put(key string, now int64, val V, expires int64) *call[V] {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if c, ok := f.m[key]; ok {
		c.fenced = true
	}
	if f.m == nil {
		f.m = make(map[string]*call[V])
	}
	c := &call[V]{done: make(chan struct{}), started: now, val: val, expires: expires}
	close(c.done)
	f.m[key] = c
	return c
}

// fenceBefore fences every call that joined the table before ts.
func (f *flights[V]) fenceBefore(ts int64) {
	f.mu.Lock()
	for k, c := range f.m {
		if c.started < ts {
			c.fenced = true
			delete(f.m, k)
		}
	}
	f.mu.Unlock()
}

// install runs fn (which must not block) unless c was fenced, atomically
// with respect to fence, and reports whether it ran.
func (f *flights[V]) install(c *call[V], fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.fenced {
		return false
	}
	fn()
	c.inL1 = true
	return true
}

// isFenced reports whether c was fenced.
func (f *flights[V]) isFenced(c *call[V]) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.fenced
}

// close stops new flights and waits for the running ones to return.
func (f *flights[V]) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}
