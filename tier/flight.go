package tier

// flight.go: the per-process flight table (single flight with fencing), and
// the sweeper that takes completed calls out of it.

import (
	"sync"
	"time"
)

// call is one load in flight for one key, as callers see it: they wait on
// done and read the result.
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

// exit is how a flight's call leaves the table. The goroutine that owns the
// flight chooses it (the zero value unless it says otherwise) and
// [flights.leave] applies it, once.
type exit uint8

const (
	// exitForget: the call leaves at once. Nothing of it went to L1, or what
	// did is visible there already, or was taken back.
	exitForget exit = iota
	// exitRetire: its value went to L1. It leaves once L1 shows the value
	// (the sweeper waits for L1 once per batch of calls), and answers the
	// callers that miss L1 meanwhile.
	exitRetire
	// exitKeep: the load failed and its error answers the callers that come
	// until the call expires (Options.FailSafeThrottle); then the sweeper
	// takes it out.
	exitKeep
)

// flights is the per-process single flight table. Unlike x/sync's
// singleflight, a completed call stays in the table until its value is
// visible in L1 (ristretto applies Sets asynchronously), so a caller that
// arrives in between gets the result instead of loading again; and an
// invalidation fences the calls it overtakes.
//
// Invariant (I1): every call that join, joinRunning or joinMany adds
// belongs to a [flight], and leaves the table exactly once, through
// flights.leave (called by [flight.leave]); an invalidation (fence,
// fenceBefore, a lost lease) may have taken it out of the map before, and
// leave then finds it gone. The goroutine that will call leave owns one wg
// count for it (the caller's goroutine while it leads the flight, then the
// flight's goroutine it hands the flight to), and leave gives it back. A
// call that put adds is the Set's: the Set removes it with forget, and it
// owns no wg count.
type flights[V any] struct {
	mu     sync.Mutex
	m      map[string]*call[V] // guarded by mu
	closed bool                // guarded by mu
	wg     sync.WaitGroup      // counts flights and the sweeper; Add only under mu while !closed

	// Set by New, immutable after.
	//
	// trusted reports whether the value of a call that started at started,
	// for a key whose value depends on tags, may still be served; running
	// tells a call still loading (its value is not yet read, so an age limit
	// does not apply to it). nil: always.
	trusted func(started int64, tags []string, running bool) bool
	// wait blocks until earlier L1 Sets are visible.
	wait func()
	// now is the cache's clock (unix nanos), for kept calls' expiry.
	now func() int64

	// The sweeper: a completed call whose value went to L1 leaves the table
	// only once that value is visible there. Instead of each flight waiting
	// for L1, such calls queue in retiring and one sweeper goroutine waits
	// for L1 once per batch. It also takes out the kept calls (exitKeep)
	// once they expire.
	retiring []retiree[V] // guarded by mu
	kept     []retiree[V] // guarded by mu
	sweeping bool         // guarded by mu: a sweeper goroutine runs
	// napping is guarded by mu: the sweeper sleeps longer than sweepDelay
	// (until a kept call expires), so a call to retire must wake it; else it
	// wakes within sweepDelay anyway, and kicking it at every retire would
	// cost each completed load an L1 wait and three goroutine switches.
	napping bool
	kick    chan struct{} // wakes the sweeper early (a call to retire, or close); made by New
}

// retiree is a completed call waiting to leave the table.
type retiree[V any] struct {
	key string
	c   *call[V]
}

// sweepDelay is how long a sweeper gathers completed calls before it waits
// for L1: at most one sweeper wake-up per sweepDelay, however many flights
// complete.
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

// isDone reports whether c completed.
func (c *call[V]) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// join returns the call for key; lead is not nil when the caller must lead
// a new flight for it (it then owns one wg count: see I1). A call is joined
// while it runs, or after it completed with a value that is still fresh,
// unless something heard since it started rules its value out (a drop of
// L1, an invalidation of one of its tags, and for a completed call the
// invalidator's age limit): such a call is fenced and replaced. tags are
// those of key's value. join returns a nil call once the table is closed.
func (f *flights[V]) join(key string, now int64, tags []string) (c *call[V], lead *flight[V]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil
	}
	if c, ok := f.m[key]; ok && f.joinable(c, now) {
		return c, nil
	}
	lead = f.start(key, now, tags)
	return &lead.cl, lead
}

// joinable reports whether a caller arriving at now may join c, and fences
// c if something heard since it started rules its value out; f.mu is held.
func (f *flights[V]) joinable(c *call[V], now int64) bool {
	if f.trusted != nil && !f.trusted(c.started, c.tags, !c.isDone()) {
		c.fenced = true
		return false
	}
	return c.usable(now)
}

// start puts the call of a new flight for key in the table and counts the
// flight in wg; f.mu is held and the table is open.
func (f *flights[V]) start(key string, now int64, tags []string) *flight[V] {
	if f.m == nil {
		f.m = make(map[string]*call[V])
	}
	fl := &flight[V]{key: key, cl: call[V]{done: make(chan struct{}), started: now, tags: tags}}
	f.m[key] = &fl.cl
	f.wg.Add(1)
	return fl
}

// joinRunning is join for a refresh: it starts a flight only if no call for
// key is running (a completed one does not count), and returns nil
// otherwise, or once the table is closed.
func (f *flights[V]) joinRunning(key string, now int64, tags []string) *flight[V] {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if c, ok := f.m[key]; ok && !c.isDone() {
		return nil
	}
	return f.start(key, now, tags)
}

// joinMany is join for several keys (without tags) under one lock: calls[i]
// is the call for keys[i], and lead holds the flights the caller must run,
// in the order of keys. ok is false once the table is closed.
func (f *flights[V]) joinMany(keys []string, now int64) (calls []*call[V], lead []*flight[V], ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, false
	}
	calls = make([]*call[V], len(keys))
	for i, k := range keys {
		if c, ok := f.m[k]; ok && f.joinable(c, now) {
			calls[i] = c
			continue
		}
		fl := f.start(k, now, nil)
		calls[i] = &fl.cl
		lead = append(lead, fl)
	}
	return calls, lead, true
}

// leave takes c, the call of a flight for key, out of the table as how
// says, and gives back the flight's wg count (I1). A call already taken
// out (fenced, or replaced by a newer one) is left alone.
func (f *flights[V]) leave(key string, c *call[V], how exit) {
	switch how {
	case exitRetire:
		f.sweepLater(key, c, &f.retiring)
	case exitKeep:
		f.sweepLater(key, c, &f.kept)
	default:
		f.forget(key, c)
	}
	f.wg.Done()
}

// forget removes c from the table if it is still the call for key.
func (f *flights[V]) forget(key string, c *call[V]) {
	f.mu.Lock()
	if f.m[key] == c {
		delete(f.m, key)
	}
	f.mu.Unlock()
}

// sweepLater queues c (the call for key) on q, retiring or kept, for the
// sweeper, and starts the sweeper if none runs. Until the sweeper takes it
// out, c answers the callers that miss L1 while it is usable.
func (f *flights[V]) sweepLater(key string, c *call[V], q *[]retiree[V]) {
	f.mu.Lock()
	if f.closed || f.m[key] != c {
		f.mu.Unlock()
		return
	}
	*q = append(*q, retiree[V]{key, c})
	start := !f.sweeping
	if start {
		f.sweeping = true
		f.wg.Add(1)
	}
	kick := !start && q == &f.retiring && f.napping
	if kick {
		f.napping = false
	}
	f.mu.Unlock()
	if start {
		go f.sweep()
	} else if kick {
		f.wake() // the sweeper sleeps until a kept call expires: retire c sooner
	}
}

func (f *flights[V]) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// sweep takes queued calls out of the table until none is left: retiring
// calls in batches once L1 shows their values, kept calls once they expire.
// It runs on its own goroutine, counted in wg, and returns at once when the
// table closes.
func (f *flights[V]) sweep() {
	defer f.wg.Done()
	t := time.NewTimer(sweepDelay)
	defer t.Stop()
	var batch []retiree[V]
	for {
		select {
		case <-t.C:
		case <-f.kick:
		}
		f.mu.Lock()
		if f.closed {
			f.sweeping = false
			f.mu.Unlock()
			return
		}
		batch, f.retiring = f.retiring, batch[:0]
		next := f.dropExpired()
		if len(batch) == 0 && len(f.kept) == 0 {
			f.sweeping = false
			f.mu.Unlock()
			return
		}
		f.napping = len(batch) == 0 && next > sweepDelay
		f.mu.Unlock()
		if len(batch) > 0 {
			f.wait()
			f.mu.Lock()
			for i, r := range batch {
				if f.m[r.key] == r.c {
					delete(f.m, r.key)
				}
				batch[i] = retiree[V]{}
			}
			f.mu.Unlock()
			next = sweepDelay
		}
		t.Reset(next)
	}
}

// dropExpired takes the kept calls that expired out of the table and
// returns how long to sleep before the next one expires (measured on the
// cache's clock: with a fake clock a kept call may stay longer, which only
// costs memory, since join never shares it past its expiry); f.mu is held.
func (f *flights[V]) dropExpired() time.Duration {
	now := f.now()
	next := time.Duration(-1)
	left := f.kept[:0]
	for _, r := range f.kept {
		if now >= r.c.expires {
			if f.m[r.key] == r.c {
				delete(f.m, r.key)
			}
			continue
		}
		left = append(left, r)
		if d := time.Duration(r.c.expires - now); next < 0 || d < next {
			next = d
		}
	}
	clear(f.kept[len(left):])
	f.kept = left
	return max(next, sweepDelay)
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

// fenceCall is fence for c only: it does nothing if c is no longer the call
// for key. It reports whether c was fenced already.
func (f *flights[V]) fenceCall(key string, c *call[V]) (was bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	was, c.fenced = c.fenced, true
	if f.m[key] == c {
		delete(f.m, key)
	}
	return was
}

// put fences the call for key, if any, and puts in its place a completed
// call answering val until expires: the value a Set is writing, so that a
// caller who misses L1 meanwhile joins it instead of reading the old value
// from L2. It returns nil once the table is closed. The caller removes it
// with forget; a fence in between marks it fenced. wroteL1 reports that
// the fenced call wrote its value to L1, where the write may still be
// queued: the caller must wait for it (Local.Wait) before its own write of
// the key, or L1 may apply the two in the wrong order (ristretto drops a
// second Set of a key whose first is still queued).
func (f *flights[V]) put(key string, now int64, val V, expires int64) (cl *call[V], wroteL1 bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	if c, ok := f.m[key]; ok {
		c.fenced = true
		wroteL1 = c.inL1
	}
	if f.m == nil {
		f.m = make(map[string]*call[V])
	}
	c := &call[V]{done: make(chan struct{}), started: now, val: val, expires: expires}
	close(c.done)
	f.m[key] = c
	return c, wroteL1
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
// with respect to fence, and reports whether it ran (keeps I3, the L1
// fence).
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

// stop stops new flights and wakes the sweeper, which returns.
func (f *flights[V]) stop() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wake()
}

// close stops new flights and waits for the flights and the sweeper to
// return.
func (f *flights[V]) close() {
	f.stop()
	f.wg.Wait()
}
